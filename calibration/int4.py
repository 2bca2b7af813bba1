"""INT4 weights with one scale per block of input channels: the blocked DequantizeLinear (opset 21) format.

Weights are handled K-major ([K, N]: input channels first) with blocks of `block` rows along K; a block's scale maps
its largest |w| to 7 (symmetric, codes in [-8, 7], zero point 0). Scales are rounded to the graph's float type
before the codes are computed, so codes * scale is exactly what DequantizeLinear returns.
"""

import numpy as np

INT4_MIN, INT4_MAX = -8, 7
DEFAULT_BLOCK = 128  # TensorRT's and ModelOpt's default INT4 block


def num_blocks(k: int, block: int) -> int:
    return -(-k // block)


def expand_blocks(scales: np.ndarray, k: int, block: int) -> np.ndarray:
    """[ceil(K/block), N] block scales repeated to [K, N] (the last block may be partial)."""
    return np.repeat(scales, block, axis=0)[:k]


def block_amax(w: np.ndarray, block: int) -> np.ndarray:
    """Largest |w| per block of `block` rows and column: [ceil(K/block), N]."""
    k, n = w.shape
    padded = np.zeros((num_blocks(k, block) * block, n), w.dtype)
    padded[:k] = np.abs(w)
    return padded.reshape(-1, block, n).max(axis=1)


def int4_scales(w: np.ndarray, block: int, dtype=np.float16, clip=1.0) -> np.ndarray:
    """Block scales amax * clip / 7 in `dtype`; a floor keeps all-zero blocks finite in fp16."""
    scales = np.maximum(block_amax(w, block).astype(np.float64) * clip / INT4_MAX, 2.0 ** -24)
    return scales.astype(dtype)


def int4_codes(w: np.ndarray, scales: np.ndarray, block: int) -> np.ndarray:
    """w / scale rounded half-to-even and saturated to [-8, 7], as int8 holding INT4 values."""
    full = expand_blocks(scales.astype(np.float64), w.shape[0], block)
    return np.clip(np.rint(w.astype(np.float64) / full), INT4_MIN, INT4_MAX).astype(np.int8)


def int4_dequantize(codes: np.ndarray, scales: np.ndarray, block: int) -> np.ndarray:
    """codes * scale in the scales' float type (DequantizeLinear with axis 0 and block_size `block`)."""
    full = expand_blocks(scales, codes.shape[0], block)
    return codes.astype(scales.dtype) * full


def int4_fake_quant(w: np.ndarray, block: int, dtype=np.float16, clip=1.0) -> np.ndarray:
    """Quantize-dequantize `w` [K, N] (what the engine's weights become), in `dtype`."""
    scales = int4_scales(w, block, dtype, clip)
    return int4_dequantize(int4_codes(w, scales, block), scales, block)
