"""NVFP4 weights: FP4 E2M1 values, one FP8 E4M3 scale per 16 input channels and one fp32 scale per tensor.

Two-level scaling as TensorRT and ModelOpt write it: the per-tensor scale maps the tensor's largest |w| to
6 (E2M1 max) * 448 (E4M3 max), so every block scale amax_block / 6 / global fits FP8. Dequantization is
DequantizeLinear(block scales, global) -> fp32 block scales, then the blocked DequantizeLinear of the FP4 values.
Weights are K-major ([K, N]) with blocks along K, as in int4.py.
"""

import ml_dtypes
import numpy as np

from .int4 import block_amax, expand_blocks

NVFP4_BLOCK = 16
E2M1_MAX = float(ml_dtypes.finfo(ml_dtypes.float4_e2m1fn).max)
E4M3_MAX = float(ml_dtypes.finfo(ml_dtypes.float8_e4m3fn).max)


def nvfp4_quantize(w: np.ndarray, block: int = NVFP4_BLOCK, clip=1.0):
    """(FP4 values [K, N] as float4_e2m1fn, FP8 block scales [ceil(K/block), N] as float8_e4m3fn, fp32 global
    scale). `clip` (scalar or per block) shrinks each block's range before its scale is rounded to FP8."""
    amax = block_amax(w, block).astype(np.float64) * clip
    global_scale = np.float32(max(float(amax.max()), 1e-12) / (E2M1_MAX * E4M3_MAX))
    block_scales = np.clip(amax / E2M1_MAX / np.float64(global_scale), 0, E4M3_MAX).astype(np.float32)
    block_scales = block_scales.astype(ml_dtypes.float8_e4m3fn)
    scales = block_scale_values(block_scales, global_scale)
    full = expand_blocks(scales.astype(np.float64), w.shape[0], block)
    safe = np.where(full > 0, full, 1.0)
    values = np.where(full > 0, np.clip(w.astype(np.float64) / safe, -E2M1_MAX, E2M1_MAX), 0.0)
    return values.astype(np.float32).astype(ml_dtypes.float4_e2m1fn), block_scales, global_scale


def block_scale_values(block_scales: np.ndarray, global_scale) -> np.ndarray:
    """The first DequantizeLinear: FP8 block scales * the fp32 global scale, rounded to fp32."""
    return block_scales.astype(np.float32) * np.float32(global_scale)


def nvfp4_dequantize(values: np.ndarray, block_scales: np.ndarray, global_scale, block: int = NVFP4_BLOCK,
                     dtype=np.float32) -> np.ndarray:
    """Both DequantizeLinear nodes in fp32 (E2M1 x fp32 scale, rounded once), then the cast to `dtype`."""
    full = expand_blocks(block_scale_values(block_scales, global_scale), values.shape[0], block)
    return (values.astype(np.float32) * full).astype(dtype)


def nvfp4_fake_quant(w: np.ndarray, block: int = NVFP4_BLOCK, dtype=np.float16, clip=1.0) -> np.ndarray:
    return nvfp4_dequantize(*nvfp4_quantize(w, block, clip), block=block, dtype=dtype)

