"""BC-block encoders behind one call: `encode(image, fmt, quality)` -> uint8 blocks [ceil(H/4), ceil(W/4), bytes].

BC4/BC5 and BC6H are the project's own encoders (encode_bc45, encode_bc6h); BC1 wraps quicktex and BC7 wraps
bc7enc (bc7enc-py). Blocks come in row-major block order; `.reshape(-1)` / `.tobytes()` gives the texture stream.
"""

import numpy as np

from ..util.errors import NtcError
from .formats import BLOCK_BYTES, FORMATS

QUALITIES = ("thorough", "fast")
BC6H_METRICS = ("linear", "relative")  # what the thorough BC6H search minimises: value error or half-bit error
_HALF_MAX = 65504.0


def pad_to_blocks(image: np.ndarray) -> np.ndarray:
    """Pad [H, W, ...] to multiples of 4 by repeating the last row/column."""
    h, w = image.shape[:2]
    ph, pw = -h % 4, -w % 4
    if ph or pw:
        pad = [(0, ph), (0, pw)] + [(0, 0)] * (image.ndim - 2)
        image = np.pad(image, pad, mode="edge")
    return image


def to_blocks(image: np.ndarray) -> np.ndarray:
    """[H, W, C] (H, W multiples of 4) -> [H/4 * W/4, 16, C], pixels row-major inside each block."""
    h, w, c = image.shape
    return image.reshape(h // 4, 4, w // 4, 4, c).transpose(0, 2, 1, 3, 4).reshape(-1, 16, c)


def from_blocks(blocks: np.ndarray, h: int, w: int) -> np.ndarray:
    """Inverse of to_blocks, cropped to [h, w, C]."""
    bh, bw = -(-h // 4), -(-w // 4)
    c = blocks.shape[-1]
    img = blocks.reshape(bh, bw, 4, 4, c).transpose(0, 2, 1, 3, 4).reshape(bh * 4, bw * 4, c)
    return img[:h, :w]


def _check_finite(image: np.ndarray, fmt: str) -> None:
    if not np.all(np.isfinite(image)):
        raise NtcError(f"{fmt}: image contains NaN or infinite values")


def _unorm8(image: np.ndarray, fmt: str, channels: tuple[int, ...]) -> np.ndarray:
    """Validate a uint8 (or float in [0, 1]) image with an allowed channel count; return float32 in [0, 255]."""
    arr = np.asarray(image)
    if arr.ndim == 2 and 1 in channels:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in channels or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise NtcError(f"{fmt}: expected an image [H, W{'' if channels == (1,) else ', ' + '|'.join(map(str, channels))}]"
                       f", got shape {tuple(np.shape(image))}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32)
    if arr.dtype.kind != "f":
        raise NtcError(f"{fmt}: expected uint8 or float in [0, 1], got dtype {arr.dtype}")
    _check_finite(arr, fmt)
    if arr.min() < 0 or arr.max() > 1:
        raise NtcError(f"{fmt}: float input must lie in [0, 1], got [{arr.min():g}, {arr.max():g}]")
    return arr.astype(np.float32) * 255.0


def _rgba8(image: np.ndarray, fmt: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise NtcError(f"{fmt}: expected uint8 RGB/RGBA, got dtype {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise NtcError(f"{fmt}: expected an image [H, W, 3|4], got shape {arr.shape}")
    if arr.shape[2] == 3:
        arr = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return arr


def _half_rgb(image: np.ndarray, fmt: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype not in (np.float16, np.float32, np.float64):
        raise NtcError(f"{fmt}: expected float16/float32 RGB, got dtype {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise NtcError(f"{fmt}: expected an image [H, W, 3], got shape {arr.shape}")
    _check_finite(arr, fmt)
    lo = 0.0 if fmt == "bc6h_uf16" else -_HALF_MAX
    if arr.min() < lo or arr.max() > _HALF_MAX:
        raise NtcError(f"{fmt}: values must lie in [{lo:g}, {_HALF_MAX:g}], got [{arr.min():g}, {arr.max():g}]")
    return arr.astype(np.float16)


def _encode_bc1(rgba: np.ndarray, quality: str) -> np.ndarray:
    from quicktex import RawTexture
    from quicktex.s3tc.bc1 import BC1Encoder

    if (rgba[..., 3] != 255).any():
        raise NtcError("bc1: the image has transparent pixels; BC1 stores opaque RGB here (use bc7 for alpha)")
    h, w = rgba.shape[:2]
    enc = BC1Encoder(18 if quality == "thorough" else 5, BC1Encoder.ColorMode.FourColor)
    out = enc.encode(RawTexture.frombytes(np.ascontiguousarray(rgba).tobytes(), w, h)).tobytes()
    return np.frombuffer(out, np.uint8).reshape(-1, 8)


def _encode_bc7(rgba: np.ndarray, quality: str) -> np.ndarray:
    try:
        import bc7enc
    except ImportError as exc:
        raise NtcError("bc7: the BC7 encoder needs bc7enc-py (pip install bc7enc-py)") from exc
    h, w = rgba.shape[:2]
    params = bc7enc.bc7enc_compress_block_params_init()
    # Token data is not a photograph: weigh all channels alike.
    params.m_perceptual = False
    for i in range(4):
        params.m_weights[i] = 1
    params.m_uber_level = 4 if quality == "thorough" else 0
    params.m_max_partitions = 64 if quality == "thorough" else 16
    out = bc7enc.pack_dds(np.ascontiguousarray(rgba).tobytes(), w, h, "BC7", params=params)
    return np.frombuffer(out, np.uint8).reshape(-1, 16)


def encode(image, fmt: str, quality: str = "thorough", *, bc6h_metric: str = "linear") -> np.ndarray:
    """Encode an image to BC blocks: uint8 [ceil(H/4), ceil(W/4), BLOCK_BYTES[fmt]] in row-major block order.

    bc4: [H, W] uint8 or float in [0, 1]; bc5: [H, W, 2]; bc1/bc7: uint8 [H, W, 3|4];
    bc6h_uf16 / bc6h_sf16: float16/float32 [H, W, 3] (UF16 non-negative). Edges are padded by replication.
    bc6h_metric: "linear" (squared value error; token latents) or "relative" (half-bit error; HDR images).
    """
    if fmt not in FORMATS:
        raise NtcError(f"unknown BC format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if quality not in QUALITIES:
        raise NtcError(f"unknown quality {quality!r}; expected one of {', '.join(QUALITIES)}")
    if bc6h_metric not in BC6H_METRICS:
        raise NtcError(f"unknown BC6H error metric {bc6h_metric!r}; expected one of {', '.join(BC6H_METRICS)}")
    h, w = np.shape(image)[:2] if np.ndim(image) >= 2 else (0, 0)
    if fmt in ("bc4", "bc5"):
        from .encode_bc45 import encode_bc4_blocks

        x = to_blocks(pad_to_blocks(_unorm8(image, fmt, (1,) if fmt == "bc4" else (2,))))
        blocks = np.concatenate([encode_bc4_blocks(x[..., c], quality) for c in range(x.shape[-1])], axis=1)
    elif fmt in ("bc6h_uf16", "bc6h_sf16"):
        from .encode_bc6h import encode_bc6h_blocks

        x = to_blocks(pad_to_blocks(_half_rgb(image, fmt)))
        blocks = encode_bc6h_blocks(x, signed=fmt == "bc6h_sf16", quality=quality, metric=bc6h_metric)
    elif fmt == "bc1":
        blocks = _encode_bc1(pad_to_blocks(_rgba8(image, fmt)), quality)
    else:
        blocks = _encode_bc7(pad_to_blocks(_rgba8(image, fmt)), quality)
    return np.ascontiguousarray(blocks, np.uint8).reshape(-(-h // 4), -(-w // 4), BLOCK_BYTES[fmt])
