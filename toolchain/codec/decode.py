"""Decode BC1/BC4/BC5/BC6H/BC7 block data on the CPU through the host C++ decoder (plugins/host/bc_host.cpp)."""

import ctypes

import numpy as np

from ..native.host import host_library
from ..util.errors import NtcError
from .formats import BLOCK_BYTES, CHANNELS, FORMAT_CODES  # noqa: F401  (re-exported for callers)

# Return codes of ntc_bc_decode.
_ERRORS = {-1: "null pointer", -2: "unknown format code", -3: "non-positive image size", -4: "wrong block buffer size"}


def encoded_size(fmt: str, height: int, width: int) -> int:
    """Bytes of block data for an image of height x width (blocks cover ceil(h/4) x ceil(w/4))."""
    _check_format(fmt)
    return -(-height // 4) * -(-width // 4) * BLOCK_BYTES[fmt]


def _check_format(fmt) -> None:
    if fmt not in FORMAT_CODES:
        raise NtcError(f"unknown BC format {fmt!r}: expected one of {', '.join(FORMAT_CODES)}")


def _as_bytes(blocks) -> np.ndarray:
    if isinstance(blocks, (bytes, bytearray, memoryview)):
        return np.frombuffer(blocks, dtype=np.uint8)
    if isinstance(blocks, np.ndarray):
        if blocks.dtype != np.uint8:
            raise NtcError(f"BC blocks must be uint8 (got {blocks.dtype}); use int32_to_blocks for INT32 words")
        return np.ascontiguousarray(blocks).reshape(-1)
    raise NtcError(f"BC blocks must be bytes, bytearray, memoryview or a uint8 array (got {type(blocks).__name__})")


def _lib():
    lib = host_library()
    fn = lib.ntc_bc_decode
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    return fn


def decode(blocks, fmt: str, height: int, width: int) -> np.ndarray:
    """Decode row-major BC blocks to an image: uint8 [H,W,4] bc1/bc7, [H,W] bc4, [H,W,2] bc5, float16 [H,W,3] bc6h."""
    _check_format(fmt)
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
            raise NtcError(f"BC image {name} must be a positive integer (got {value!r})")
    height, width = int(height), int(width)
    if height > 1 << 20 or width > 1 << 20:
        raise NtcError(f"BC image size {height}x{width} is too large (limit 1048576 per side)")
    data = _as_bytes(blocks)
    expected = encoded_size(fmt, height, width)
    if data.size != expected:
        raise NtcError(f"{fmt} data for a {height}x{width} image must be {expected} bytes "
                       f"({-(-height // 4)}x{-(-width // 4)} blocks of {BLOCK_BYTES[fmt]}), got {data.size}")
    half = fmt.startswith("bc6h")
    channels = CHANNELS[fmt]
    shape = (height, width) if channels == 1 else (height, width, channels)
    out = np.empty(shape, dtype=np.uint16 if half else np.uint8)
    rc = _lib()(data.ctypes.data, data.size, FORMAT_CODES[fmt], height, width, out.ctypes.data)
    if rc != 0:
        raise NtcError(f"host BC decoder failed for {fmt} {height}x{width}: {_ERRORS.get(rc, f'error {rc}')}")
    return out.view(np.float16) if half else out


def blocks_to_int32(blocks) -> np.ndarray:
    """uint8 blocks [..., 8] or [..., 16] to the plugin's little-endian INT32 words [..., 2] or [..., 4]."""
    arr = np.asarray(blocks)
    if arr.dtype != np.uint8 or arr.ndim == 0 or arr.shape[-1] not in (8, 16):
        raise NtcError(f"blocks_to_int32 needs uint8 [..., 8] or [..., 16] (got {arr.dtype} {list(arr.shape)})")
    return np.ascontiguousarray(arr).view("<i4").astype(np.int32, copy=False)


def int32_to_blocks(words) -> np.ndarray:
    """The plugin's INT32 words [..., 2] or [..., 4] back to uint8 blocks [..., 8] or [..., 16]."""
    arr = np.asarray(words)
    if arr.dtype != np.int32 or arr.ndim == 0 or arr.shape[-1] not in (2, 4):
        raise NtcError(f"int32_to_blocks needs int32 [..., 2] or [..., 4] (got {arr.dtype} {list(arr.shape)})")
    return np.ascontiguousarray(arr.astype("<i4", copy=False)).view(np.uint8)
