"""DDS files holding one BC-compressed 2D image: write with a DX10 header, read DX10 and legacy FourCC headers."""

import struct
from pathlib import Path

import numpy as np

from ..util.atomic import write_bytes
from ..util.errors import NtcError
from .decode import encoded_size
from .formats import BLOCK_BYTES

DXGI_FORMATS = {"bc1": 71, "bc4": 80, "bc5": 83, "bc6h_uf16": 95, "bc6h_sf16": 96, "bc7": 98}
# Reading also accepts the TYPELESS variants, which store the same blocks.
_DXGI_TO_FORMAT = {**{v: k for k, v in DXGI_FORMATS.items()}, 70: "bc1", 79: "bc4", 82: "bc5", 94: "bc6h_uf16",
                   97: "bc7"}
_LEGACY_FOURCC = {b"DXT1": "bc1", b"ATI1": "bc4", b"BC4U": "bc4", b"ATI2": "bc5", b"BC5U": "bc5"}

_MAGIC = b"DDS "
_HEADER_SIZE = 124
_PIXELFORMAT_SIZE = 32
_DX10_SIZE = 20
_DDSD_CAPS, _DDSD_HEIGHT, _DDSD_WIDTH, _DDSD_PIXELFORMAT, _DDSD_LINEARSIZE = 0x1, 0x2, 0x4, 0x1000, 0x80000
_DDPF_FOURCC = 0x4
_DDSCAPS_TEXTURE = 0x1000
_D3D10_RESOURCE_DIMENSION_TEXTURE2D = 3


def write_dds(path, blocks, fmt: str, height: int, width: int) -> None:
    """Write row-major BC blocks as a single-level DDS (DX10 header), atomically."""
    if fmt not in DXGI_FORMATS:
        raise NtcError(f"cannot write BC format {fmt!r} to DDS: expected one of {', '.join(DXGI_FORMATS)}")
    if not all(isinstance(v, (int, np.integer)) and v > 0 for v in (height, width)):
        raise NtcError(f"DDS image size must be positive integers (got {height!r}x{width!r})")
    data = np.frombuffer(blocks, np.uint8) if isinstance(blocks, (bytes, bytearray, memoryview)) else np.asarray(blocks)
    if data.dtype != np.uint8:
        raise NtcError(f"DDS block data must be uint8 (got {data.dtype})")
    expected = encoded_size(fmt, int(height), int(width))
    if data.size != expected:
        raise NtcError(f"{fmt} data for a {height}x{width} DDS must be {expected} bytes, got {data.size}")
    flags = _DDSD_CAPS | _DDSD_HEIGHT | _DDSD_WIDTH | _DDSD_PIXELFORMAT | _DDSD_LINEARSIZE
    pixelformat = struct.pack("<II4s5I", _PIXELFORMAT_SIZE, _DDPF_FOURCC, b"DX10", 0, 0, 0, 0, 0)
    header = struct.pack("<7I44x", _HEADER_SIZE, flags, int(height), int(width), expected, 0, 1)
    header += pixelformat + struct.pack("<4I4x", _DDSCAPS_TEXTURE, 0, 0, 0)
    dx10 = struct.pack("<5I", DXGI_FORMATS[fmt], _D3D10_RESOURCE_DIMENSION_TEXTURE2D, 0, 1, 0)
    assert len(header) == _HEADER_SIZE
    write_bytes(path, _MAGIC + header + dx10 + np.ascontiguousarray(data).tobytes())


def read_dds(path) -> tuple[np.ndarray, str, int, int]:
    """Read the top-level image of a BC DDS file: (blocks uint8 [n_blocks, 8|16], fmt, height, width)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise NtcError(f"cannot read DDS file {path}: {exc.strerror or exc}") from None
    if len(raw) < 4 + _HEADER_SIZE or raw[:4] != _MAGIC:
        raise NtcError(f"{path} is not a DDS file (missing 'DDS ' magic or header shorter than 128 bytes)")
    size, _flags, height, width = struct.unpack_from("<4I", raw, 4)
    pf_size, pf_flags, fourcc = struct.unpack_from("<II4s", raw, 4 + 72)
    if size != _HEADER_SIZE or pf_size != _PIXELFORMAT_SIZE:
        raise NtcError(f"{path}: malformed DDS header (size {size}, pixel format size {pf_size})")
    if not pf_flags & _DDPF_FOURCC:
        raise NtcError(f"{path}: DDS pixel format is not block-compressed (no FourCC)")
    offset = 4 + _HEADER_SIZE
    if fourcc == b"DX10":
        if len(raw) < offset + _DX10_SIZE:
            raise NtcError(f"{path}: truncated DDS DX10 header")
        dxgi, dimension, _misc, array_size = struct.unpack_from("<4I", raw, offset)
        offset += _DX10_SIZE
        if dxgi not in _DXGI_TO_FORMAT:
            raise NtcError(f"{path}: unsupported DXGI format {dxgi} (supported: {sorted(_DXGI_TO_FORMAT)})")
        if dimension != _D3D10_RESOURCE_DIMENSION_TEXTURE2D or array_size < 1:
            raise NtcError(f"{path}: only 2D textures are supported (dimension {dimension}, array size {array_size})")
        fmt = _DXGI_TO_FORMAT[dxgi]
    elif fourcc in _LEGACY_FOURCC:
        fmt = _LEGACY_FOURCC[fourcc]
    else:
        raise NtcError(f"{path}: unsupported DDS FourCC {fourcc!r}")
    if not (0 < height <= 1 << 20 and 0 < width <= 1 << 20):
        raise NtcError(f"{path}: invalid DDS image size {height}x{width}")
    nbytes = encoded_size(fmt, height, width)
    if len(raw) - offset < nbytes:
        raise NtcError(f"{path}: truncated DDS data ({len(raw) - offset} bytes, {fmt} {height}x{width} needs {nbytes})")
    # Only the top mip level / first array slice is returned; what follows it is ignored.
    blocks = np.frombuffer(raw, np.uint8, count=nbytes, offset=offset).reshape(-1, BLOCK_BYTES[fmt]).copy()
    return blocks, fmt, int(height), int(width)
