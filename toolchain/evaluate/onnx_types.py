"""ONNX's narrow tensor types from numpy: INT4 packing in ONNX's nibble order, and ONNX Runtime inputs of FP8 E4M3FN
and INT4 arrays (ml_dtypes), which ORT's Python API does not take as numpy arrays though its CPU kernels run both."""

import ctypes

import ml_dtypes
import numpy as np
from onnx import TensorProto

from ..util.errors import NtcError


def pack_int4(codes: np.ndarray, pad: int = 0) -> bytes:
    """Int4 codes (any shape, values -8..7) flattened, two per byte, element 2i in the low nibble of byte i (as ONNX
    stores INT4); an odd count ends in the nibble `pad`."""
    nibbles = (np.asarray(codes).astype(np.int8).reshape(-1) & 0xF).astype(np.uint8)
    if len(nibbles) % 2:
        nibbles = np.append(nibbles, np.uint8(pad & 0xF))
    return (nibbles[0::2] | (nibbles[1::2] << 4)).tobytes()


def unpack_int4(data: bytes, count: int) -> np.ndarray:
    """The first `count` int4 codes of bytes written by `pack_int4`, as an ml_dtypes.int4 array."""
    raw = np.frombuffer(data, np.uint8)
    nibbles = np.stack([raw & 0xF, raw >> 4], axis=-1).reshape(-1)[:count].astype(np.int8)
    return ((nibbles ^ 8) - 8).astype(ml_dtypes.int4)  # sign-extend the 4-bit two's complement


def ort_inputs(feeds: dict[str, np.ndarray]) -> dict:
    """Feeds -> ONNX Runtime inputs: FP8 E4M3FN and INT4 arrays (ml_dtypes) as OrtValues of that ONNX type, the rest
    as they are."""
    import onnxruntime as ort

    out = {}
    for name, value in feeds.items():
        if value.dtype == ml_dtypes.float8_e4m3fn:  # one byte per value: ORT reads the bytes as the ONNX type
            out[name] = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
                np.ascontiguousarray(value).view(np.uint8), TensorProto.FLOAT8E4M3FN)
        elif value.dtype == ml_dtypes.int4:  # two values per byte: written into an INT4 tensor of the right shape
            packed = pack_int4(value)
            ort_value = ort.OrtValue.ortvalue_from_shape_and_type(list(value.shape), TensorProto.INT4)
            if ort_value.tensor_size_in_bytes() != len(packed):
                raise NtcError(f"feed {name!r}: ONNX Runtime holds {list(value.shape)} INT4 in "
                               f"{ort_value.tensor_size_in_bytes()} bytes, not {len(packed)}")
            ctypes.memmove(ort_value.data_ptr(), packed, len(packed))
            out[name] = ort_value
        else:
            out[name] = value
    return out
