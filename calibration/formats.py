"""Quantized number formats: INT8 (symmetric scale, amax -> 127) and FP8 E4M3FN (saturating), as numpy fake-quant."""

import ml_dtypes
import numpy as np
import onnx

from ..util.errors import NtcError

PRECISIONS = ("int8", "fp8")
INT8_MAX = 127.0
FP8_E4M3_MAX = 448.0
QMAX = {"int8": INT8_MAX, "fp8": FP8_E4M3_MAX}
ONNX_TYPE = {"int8": onnx.TensorProto.INT8, "fp8": onnx.TensorProto.FLOAT8E4M3FN}
# FLOAT8E4M3FN Q/DQ appeared in opset 19; INT8 per-axis Q/DQ in 13.
MIN_OPSET = {"int8": 13, "fp8": 19}


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise NtcError(f"unknown calibration precision {precision!r}; choose from {', '.join(PRECISIONS)}, int4, "
                       "nvfp4")
    return precision


def scale_of(amax, precision: str):
    """Symmetric scale mapping amax to the format's largest value (a floor keeps all-zero tensors finite)."""
    return np.maximum(np.asarray(amax, np.float64), 1e-12) / QMAX[precision]


def to_codes(x: np.ndarray, scale, precision: str) -> np.ndarray:
    """x / scale rounded to the format (round-half-even, saturating): int8 or float8_e4m3fn array."""
    y = np.asarray(x, np.float64) / np.asarray(scale, np.float64)
    if precision == "int8":
        return np.clip(np.rint(y), -INT8_MAX - 1, INT8_MAX).astype(np.int8)  # QuantizeLinear saturates at -128
    return np.clip(y, -FP8_E4M3_MAX, FP8_E4M3_MAX).astype(np.float32).astype(ml_dtypes.float8_e4m3fn)


def fake_quant(x: np.ndarray, scale, precision: str) -> np.ndarray:
    """Quantize-dequantize in float64 (what a Q->DQ pair computes)."""
    return to_codes(x, scale, precision).astype(np.float64) * np.asarray(scale, np.float64)


def codes_tensor(name: str, codes: np.ndarray, precision: str) -> onnx.TensorProto:
    """An ONNX initializer holding int8 or FLOAT8E4M3FN codes."""
    if precision == "int8":
        return onnx.numpy_helper.from_array(np.ascontiguousarray(codes, np.int8), name)
    raw = np.ascontiguousarray(codes).view(np.uint8).tobytes()
    return onnx.helper.make_tensor(name, ONNX_TYPE["fp8"], list(codes.shape), raw, raw=True)


def zero_point(name: str, precision: str, shape=()) -> onnx.TensorProto:
    return codes_tensor(name, np.zeros(shape, np.int8 if precision == "int8" else ml_dtypes.float8_e4m3fn), precision)
