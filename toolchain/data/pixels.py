"""Pixels as the ViT takes them: any image array -> uint8 HxWx3."""

import numpy as np

from ..util.errors import NtcError


def to_rgb_uint8(img: np.ndarray, what: str = "image") -> np.ndarray:
    """Any 2-D gray / RGB / RGBA array (bool, uint8, uint16 or float in 0..1) -> uint8 HxWx3."""
    a = np.asarray(img)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        a = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise NtcError(f"{what}: unsupported pixel type {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] in (3, 4):
        a = a[:, :, :3]  # alpha is dropped: the ViT sees colour only
    else:
        raise NtcError(f"{what}: expected HxW, HxWx3 or HxWx4 pixels, got shape {list(a.shape)}")
    return np.ascontiguousarray(a)
