"""The images a store is built from, as (key, source) items a worker anywhere can load by itself.

A source is a short string: `file:PATH`, `skimage:NAME`, `digits:I`, or `photos:PHOTO#cropJ` (crop J of a photograph
of the corpus, data/photos.py); `load(source)` turns it into uint8 HxWx3 in whichever process runs it.
"""

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..util.errors import NtcError

BUILTIN_CHOICES = ("skimage", "digits", "photos", "photos:train", "photos:calib", "photos:val")


def from_files(paths) -> list[tuple[str, str]]:
    """Image files, keyed by the path as given (unique by construction)."""
    items = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise NtcError(f"{p}: no such image file")
        items.append((str(p), f"file:{p.resolve()}"))
    return items


def from_list(list_file) -> list[tuple[str, str]]:
    """A text file of image paths, one a line (relative paths are taken from the list's folder; # comments)."""
    path = Path(list_file)
    try:
        lines = path.read_text().splitlines()
    except OSError:
        raise NtcError(f"{path}: cannot read the image list") from None
    names = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not names:
        raise NtcError(f"{path}: the image list names no image")
    return [(n, src) for n, (_, src) in zip(names, from_files(path.parent / n for n in names))]


def from_builtin(name: str) -> list[tuple[str, str]]:
    """A built-in set: skimage, digits, or photos[:SPLIT] (every crop of every photograph of the split)."""
    from ..data import tokens

    if name == "skimage":
        return [(n, f"skimage:{n}") for n in tokens.SKIMAGE_NAMES]
    if name == "digits":
        return [(f"digits/{i}", f"digits:{i}") for i in range(len(_digits()))]
    if name == "photos" or name.startswith("photos:"):
        from ..data import photos

        split = name.partition(":")[2] or "all"
        found, _ = photos.photos_for(split)
        if not found:
            raise NtcError("no photograph source is installed: pip install scikit-image (see ntc_export.data.photos)")
        return [(f"{p.key}#crop{j}", f"photos:{p.key}#crop{j}") for p in found for j in range(tokens.PHOTO_CROPS)]
    raise NtcError(f"unknown built-in image set {name!r} (choose from {', '.join(BUILTIN_CHOICES)})")


def check_unique(items: list[tuple[str, str]]) -> None:
    if not items:
        raise NtcError("no images to build a store from")
    seen = set()
    for key, _ in items:
        if key in seen:
            raise NtcError(f"image key {key!r} appears twice in the input: keys must be unique")
        seen.add(key)


def keys_digest(items: list[tuple[str, str]]) -> str:
    """What the input's identity is: its keys in order (a rerun must see the same list)."""
    h = hashlib.sha256()
    for key, _ in items:
        h.update(key.encode() + b"\n")
    return h.hexdigest()


@lru_cache(maxsize=1)
def _skimage() -> dict:
    from ..data.tokens import builtin_images

    images, _, names = builtin_images("skimage")
    return dict(zip(names, images))


@lru_cache(maxsize=1)
def _digits() -> list:
    from ..data.tokens import builtin_images

    return builtin_images("digits")[0]


@lru_cache(maxsize=1)
def _photos() -> dict:
    from ..data import photos

    return {p.key: p for p in photos.catalogue()[0]}


@lru_cache(maxsize=2)
def _photo_crops(key: str) -> list:
    from ..data import photos
    from ..data.pixels import to_rgb_uint8
    from ..data.tokens import PHOTO_CROPS

    photo = _photos().get(key)
    if photo is None:
        raise NtcError(f"photograph {key!r} is not installed here")
    return photos.crops(to_rgb_uint8(photo.load(), photo.key), photo.key, PHOTO_CROPS)


def load(source: str) -> np.ndarray:
    """The uint8 HxWx3 image a source names."""
    from ..data.tokens import read_image

    kind, _, rest = source.partition(":")
    if kind == "file":
        return read_image(rest)
    if kind == "skimage":
        return _skimage()[rest]
    if kind == "digits":
        return _digits()[int(rest)]
    if kind == "photos":
        key, _, crop = rest.rpartition("#crop")
        return _photo_crops(key)[int(crop)]
    raise NtcError(f"unknown image source {source!r}")
