"""Real visual tokens: images (built-in sets or files) -> DINOv2-S/14 tokens, saved as validated .npz TokenSets.

Images are resized to a square side, to W x H, or to their native aspect ratio (`smart_resize`: Qwen2-VL's rule with
factor 14, the ViT's patch; no 2x2 merge, so sides are multiples of 14, not 28). A set whose images land on several
patch grids is a MixedTokenSet (a ragged file, format version 2); a set of one grid stays a TokenSet (version 1).
"""

import hashlib
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..util.atomic import atomic_path
from ..util.errors import NtcError
from ..util.paths import cache_dir
from . import vit
from .pixels import to_rgb_uint8

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
BUILTINS = ("skimage", "digits", "photos", "stamps")
SPLITS = {"skimage": ("all", "val"), "digits": ("all", "train", "calib", "val"),
          "photos": ("all", "train", "calib", "val"), "stamps": ("all", "train", "val")}
PHOTO_CROPS = 8  # crops (several scales, every other one mirrored) per photograph of the corpus
# The bundled scikit-image pictures (no download needed), in a fixed order.
SKIMAGE_NAMES = (
    "astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "page", "text", "clock", "brick",
    "grass", "gravel", "cell", "colorwheel", "horse", "hubble_deep_field", "immunohistochemistry", "logo",
    "microaneurysms", "retina", "shepp_logan_phantom", "checkerboard", "stereo_motorcycle",
)
DIGITS_SEED = 0
DIGITS_SPLIT = {"train": (0, 1197), "calib": (1197, 1397), "val": (1397, 1797)}
SINGLE_GRID_VERSION = 1  # tokens [N, 1+h*w, D] + one grid: what a TokenSet writes (and cache keys name)
TOKENSET_VERSION = 2  # the newest token file format read and written here: ragged (MixedTokenSet) files
MIN_PIXELS = 56 * 56  # --size native: Qwen2-VL's default floor
MAX_PIXELS = 672 * 672  # --size native: the default engine profiles cover 224..672 px sides
MAX_ASPECT = 200  # Qwen2-VL refuses longer strips too


# ---- images -------------------------------------------------------------------------------------------------------


def _skimage_images():
    import skimage.data

    images, names = [], []
    for name in SKIMAGE_NAMES:
        try:
            img = getattr(skimage.data, name)()
        except Exception as e:  # a missing or renamed picture in another scikit-image release
            raise NtcError(f"scikit-image picture {name!r} cannot be loaded offline ({type(e).__name__})") from None
        if name == "stereo_motorcycle":
            img = img[0]  # (left, right, disparity): the left view
        images.append(to_rgb_uint8(img, f"skimage.data.{name}"))
        names.append(name)
    return images, None, names


def _digits_images():
    from sklearn.datasets import load_digits

    d = load_digits()
    pix = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    images = [to_rgb_uint8(p) for p in pix]
    return images, d.target.astype(np.int64), [f"digits/{i}" for i in range(len(images))]


def builtin_images(name: str):
    """Built-in image set -> (list of uint8 HxWx3, labels int64 [N] or None, names)."""
    if name == "skimage":
        return _skimage_images()
    if name == "digits":
        return _digits_images()
    raise NtcError(f"unknown built-in image set {name!r} (choose from {', '.join(BUILTINS)})")


def read_image(path) -> np.ndarray:
    """An image file (any format Pillow reads) -> uint8 HxWx3."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (FileNotFoundError, IsADirectoryError):
        raise NtcError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise NtcError(f"{path}: cannot read image ({str(e).splitlines()[0][:200]})") from None


def _resized(img: np.ndarray, h: int, w: int, i: int = 0):
    """One uint8 HxWx3 image -> float32 torch [1, 3, h, w] in 0..1: bilinear (antialiased when shrinking)."""
    import torch
    import torch.nn.functional as F

    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise NtcError(f"image {i}: expected uint8 HxWx3, got {img.dtype} {list(img.shape)}")
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255.0
    shrink = img.shape[0] > h or img.shape[1] > w
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)


def preprocess(images, size) -> np.ndarray:
    """uint8 HxWx3 images -> float32 [N, 3, H, W] for `size` = a side or (H, W): bilinear resize (antialiased when
    shrinking), ImageNet norm."""
    h, w = (size, size) if isinstance(size, (int, np.integer)) else size
    out = np.empty((len(images), 3, h, w), dtype=np.float32)
    for i, img in enumerate(images):
        out[i] = _resized(img, h, w, i)[0].numpy()
    return (out - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]


def resized_pictures(images, size) -> list[np.ndarray]:
    """uint8 HxWx3 images resized as `preprocess` resizes them for `size` (a side or (H, W)), rounded to 8 bits: the
    picture a user would keep at the ViT's input size (the same resize again is then the identity)."""
    h, w = (size, size) if isinstance(size, (int, np.integer)) else size
    return [np.ascontiguousarray(np.clip(np.rint(_resized(img, h, w, i)[0].permute(1, 2, 0).numpy() * 255.0),
                                         0, 255).astype(np.uint8)) for i, img in enumerate(images)]


def _check_size(size: int) -> int:
    if not isinstance(size, (int, np.integer)) or size < vit.PATCH or size % vit.PATCH:
        raise NtcError(f"image size must be a positive multiple of {vit.PATCH} (e.g. 224 or 448), got {size!r}")
    return int(size)


def _check_hw(size) -> tuple[int, int]:
    """A square side or (H, W) in pixels -> (H, W), both positive multiples of the patch."""
    if isinstance(size, (int, np.integer)):
        return _check_size(size), int(size)
    hw = tuple(size) if isinstance(size, (tuple, list)) else ()
    if len(hw) != 2 or not all(isinstance(v, (int, np.integer)) and v >= vit.PATCH and v % vit.PATCH == 0 for v in hw):
        raise NtcError(f"image size must be a side or (height, width), positive multiples of {vit.PATCH}, got {size!r}")
    return int(hw[0]), int(hw[1])


def check_pixel_budget(min_pixels: int, max_pixels: int, factor: int = vit.PATCH) -> None:
    """factor^2 <= min_pixels <= max_pixels (so every image gets at least one patch and the range is not empty)."""
    if not 1 <= factor * factor <= min_pixels <= max_pixels:
        raise NtcError(f"pixel budget must satisfy {factor}*{factor} <= min_pixels <= max_pixels, got "
                       f"min_pixels={min_pixels} max_pixels={max_pixels}")


def smart_resize(height: int, width: int, factor: int = vit.PATCH, min_pixels: int = MIN_PIXELS,
                 max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(height, width) in pixels, both multiples of `factor`, near the image's own aspect ratio and inside
    [min_pixels, max_pixels]: Qwen2-VL's `smart_resize` rule. Qwen2-VL takes factor 28 (patch 14 x 2x2 merge); we
    take 14, the ViT's patch, since no merge follows. Each side is rounded to the factor; a result over max_pixels is
    shrunk by sqrt(h*w/max_pixels) and floored, one under min_pixels grown by sqrt(min_pixels/(h*w)) and ceiled."""
    if height < 1 or width < 1:
        raise NtcError(f"image of {height}x{width} pixels has no area")
    check_pixel_budget(min_pixels, max_pixels, factor)
    if max(height, width) / min(height, width) > MAX_ASPECT:
        raise NtcError(f"image of {height}x{width} pixels: aspect ratio over {MAX_ASPECT} (too thin a strip)")
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def parse_size(text: str):
    """`--size` text -> a square side (int), (H, W) pixels from "WxH", or "native"; a one-line NtcError otherwise."""
    t = str(text).strip().lower()
    if t == "native":
        return "native"
    if re.fullmatch(r"\d+", t):
        side = int(t)
        if side < vit.PATCH or side % vit.PATCH:
            raise NtcError(f"--size {text}: a square side must be a positive multiple of {vit.PATCH} (224, 448, ...)")
        return side
    if m := re.fullmatch(r"(\d+)x(\d+)", t):
        w, h = int(m[1]), int(m[2])
        if min(w, h) < vit.PATCH or w % vit.PATCH or h % vit.PATCH:
            raise NtcError(f"--size {text}: width and height must be positive multiples of {vit.PATCH} (e.g. 448x252)")
        return h, w
    raise NtcError(f"--size {text}: give a side (224, 448), WxH (e.g. 448x252) or native")


def target_sizes(images, size, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS,
                 factor: int = vit.PATCH) -> list[tuple[int, int]]:
    """The (H, W) each image is resized to: `size` a side, (H, W), or "native" (smart_resize with `factor`: 14, or
    28 for even grid sides as Qwen's processors make them)."""
    if size == "native":
        return [smart_resize(img.shape[0], img.shape[1], factor, min_pixels, max_pixels) for img in images]
    hw = _check_hw(size)
    return [hw] * len(images)


def resize_record(size, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS, factor: int = vit.PATCH) -> dict:
    """How images were resized, kept in a token file's provenance."""
    if size == "native":
        return {"mode": "native", "rule": "Qwen2-VL smart_resize", "factor": factor, "min_pixels": min_pixels,
                "max_pixels": max_pixels}
    h, w = _check_hw(size)
    return {"mode": "fixed", "height": h, "width": w}


def extract_tokens(images, size=224, batch: int = 16, progress: bool = True) -> np.ndarray:
    """uint8 HxWx3 images -> ViT tokens float32 [N, 1 + h*w, 384] for `size` = a side or (H, W) pixels, h = H/14,
    w = W/14 (ONNX Runtime, CPU)."""
    return _extract(images, size, batch, progress, lambda x: (vit.run_tokens(x),))[0]


def extract_tokens_attention(images, size=224, batch: int = 16, progress: bool = True
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 HxWx3 images -> (tokens [N, 1+h*w, 384], the last block's CLS attention [N, heads, h*w], the
    penultimate block's keys [N, 1+h*w, 384]), all float32, from one ViT pass."""
    return _extract(images, size, batch, progress, vit.run_tokens_attention)


def _extract(images, size, batch: int, progress: bool, run) -> tuple[np.ndarray, ...]:
    """`run` (normalised images -> arrays with the batch first) over the images in batches, concatenated."""
    size = _check_hw(size)
    if len(images) == 0:
        raise NtcError("no images to extract tokens from")
    if batch < 1:
        raise NtcError(f"batch must be >= 1, got {batch}")
    n, parts = len(images), []
    bar = None
    if progress:
        from rich.console import Console
        from rich.progress import Progress

        bar = Progress(console=Console(stderr=True), transient=True)
        bar.start()
        task = bar.add_task(f"ViT tokens @ {size[1]}x{size[0]}px", total=n)
    try:
        for start in range(0, n, batch):
            chunk = images[start : start + batch]
            parts.append(run(preprocess(chunk, size)))
            if bar:
                bar.advance(task, len(chunk))
    finally:
        if bar:
            bar.stop()
    return tuple(np.concatenate(arrays).astype(np.float32, copy=False) for arrays in zip(*parts))


def attention_source() -> dict:
    """What a token file's `cls_attention` and `keys` arrays are, stored beside them."""
    return {"cls_attention": f"softmax probabilities of ViT block {vit.ATTENTION_LAYER} (the last), CLS query row, "
                             f"patch key columns, per head: [N, {vit.HEADS}, h*w]",
            "keys": f"key projection (+ bias) of ViT block {vit.KEYS_LAYER} (the penultimate), CLS row first, heads "
                    f"side by side (head i = columns {vit.DIM // vit.HEADS}i..): [N, 1+h*w, {vit.DIM}]",
            "tensors": {"cls_attention": vit.ATTENTION_PROBS, "keys": vit.KEYS_OUT}, "heads": vit.HEADS}


# ---- token sets ---------------------------------------------------------------------------------------------------


@dataclass
class TokenSet:
    """ViT tokens [N, 1 + h*w, D] (CLS first), their patch grid, optional labels and provenance; optionally the
    last block's CLS attention [N, heads, h*w] and the penultimate block's keys [N, 1 + h*w, Dk]."""

    tokens: np.ndarray
    grid: tuple[int, int]
    labels: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    attention: np.ndarray | None = None
    keys: np.ndarray | None = None

    def __post_init__(self):
        self.grid = (int(self.grid[0]), int(self.grid[1]))
        _validate(self.tokens, self.grid, self.labels, "TokenSet")
        _validate_attention(self.attention, self.keys, self.tokens.shape, "TokenSet")

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def patch_tokens(self) -> np.ndarray:
        """Tokens without the CLS row: [N, h*w, D]."""
        return self.tokens[:, 1:]

    @property
    def grid_tokens(self) -> np.ndarray:
        """Patch tokens on their grid: [N, h, w, D] (what models and exported graphs take)."""
        h, w = self.grid
        return self.patch_tokens.reshape(len(self), h, w, self.tokens.shape[2])

    def by_grid(self) -> list[tuple[np.ndarray, "TokenSet"]]:
        """(indices into this set, the single-grid TokenSet of those images) per grid; a set of one grid is one
        group. Consumers of token files that may mix grids iterate these."""
        return [(np.arange(len(self)), self)]

    def subset(self, indices) -> "TokenSet":
        idx = np.asarray(indices, dtype=np.int64)
        meta = dict(self.meta)
        if "names" in meta:
            meta["names"] = [meta["names"][i] for i in idx]
        labels = None if self.labels is None else self.labels[idx]
        attention = None if self.attention is None else self.attention[idx]
        keys = None if self.keys is None else self.keys[idx]
        return TokenSet(self.tokens[idx], self.grid, labels, meta, attention, keys)

    def save(self, path, half: bool = False) -> Path:
        """Write an .npz atomically: tokens, grid, labels (if any), names, model_sha256, image_size, source,
        provenance. `half`: tokens as float16, zip-compressed (a corpus cache; loading gives float32 again)."""
        tokens = self.tokens.astype(np.float16) if half else self.tokens
        arrays = {"tokens": tokens, "grid": np.array(self.grid, dtype=np.int64)}
        if self.labels is not None:
            arrays["labels"] = self.labels
        arrays.update(_meta_arrays(self.meta, len(self), SINGLE_GRID_VERSION))
        if self.attention is not None:
            arrays["cls_attention"] = self.attention.astype(np.float16) if half else self.attention
            arrays["keys"] = self.keys.astype(np.float16) if half else self.keys
            arrays.update(_attention_source_array(self.meta))
        return _write_npz(path, arrays, half)


def _meta_arrays(meta: dict, n: int, version: int) -> dict:
    """The provenance arrays every token file carries beside its tokens."""
    names = meta.get("names") or [str(i) for i in range(n)]
    arrays = {"names": np.array([str(name) for name in names]),
              "model_sha256": np.array(str(meta.get("model_sha256", ""))),
              "image_size": np.array(int(meta.get("image_size", 0)), dtype=np.int64),
              "source": np.array(str(meta.get("source", ""))),
              "format_version": np.array(version, dtype=np.int64)}
    if meta.get("provenance"):
        arrays["provenance"] = np.array(json.dumps(meta["provenance"], sort_keys=True))
    return arrays


def _attention_source_array(meta: dict) -> dict:
    return {"attention_source": np.array(json.dumps(meta.get("attention_source") or attention_source(),
                                                    sort_keys=True))}


def _write_npz(path, arrays: dict, half: bool) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:  # a file object keeps numpy from appending another .npz
            (np.savez_compressed if half else np.savez)(f, **arrays)
    return path


PER_GRID = ("grid", "tokens", "patch_tokens", "grid_tokens", "attention", "keys")


@dataclass
class MixedTokenSet:
    """Images on several patch grids in one set (a ragged token file, format version 2): `groups` holds, per grid,
    the indices of its images in the whole set and their single-grid TokenSet. Consumers iterate `by_grid()` (as for
    a TokenSet); the per-grid arrays (`tokens`, `grid`, ...) exist on the groups only and say so in one line here."""

    groups: list[tuple[np.ndarray, TokenSet]]
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.groups = [(np.asarray(idx, dtype=np.int64).reshape(-1), ts) for idx, ts in self.groups]
        _validate_groups(self.groups, "MixedTokenSet")

    def __getattr__(self, name):
        if name in PER_GRID:  # a consumer written for one grid: point at by_grid() rather than a traceback
            grids = ", ".join(f"{ts.grid[0]}x{ts.grid[1]}" for _, ts in self.__dict__.get("groups", ()))
            raise NtcError(f"{self.__dict__.get('meta', {}).get('path', 'the token set')} holds images on several "
                           f"grids ({grids}): it has no single .{name}; iterate .by_grid()")
        raise AttributeError(name)

    def __len__(self) -> int:
        return sum(len(idx) for idx, _ in self.groups)

    def by_grid(self) -> list[tuple[np.ndarray, TokenSet]]:
        """(indices into this set, the single-grid TokenSet of those images) per grid, in order of first image."""
        return list(self.groups)

    @property
    def grids(self) -> np.ndarray:
        """Each image's patch grid (h, w): int64 [N, 2]."""
        out = np.empty((len(self), 2), dtype=np.int64)
        for idx, ts in self.groups:
            out[idx] = ts.grid
        return out

    @property
    def labels(self) -> np.ndarray | None:
        if self.groups[0][1].labels is None:
            return None
        out = np.empty(len(self), dtype=self.groups[0][1].labels.dtype)
        for idx, ts in self.groups:
            out[idx] = ts.labels
        return out

    @property
    def has_attention(self) -> bool:
        return self.groups[0][1].attention is not None

    def _rows(self) -> list[tuple[TokenSet, int]]:
        """(its group's TokenSet, its row there) per image, in image order."""
        rows = [None] * len(self)
        for idx, ts in self.groups:
            for r, i in enumerate(idx):
                rows[i] = (ts, r)
        return rows

    def subset(self, indices) -> "TokenSet | MixedTokenSet":
        """The images at `indices` (in that order): a TokenSet when they share one grid."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0 or idx.min() < 0 or idx.max() >= len(self):
            raise NtcError(f"subset indices must be 0..{len(self) - 1} (at least one), got {idx.tolist()[:8]}")
        group_of, row_of = np.empty(len(self), np.int64), np.empty(len(self), np.int64)
        for g, (gidx, _) in enumerate(self.groups):
            group_of[gidx], row_of[gidx] = g, np.arange(len(gidx))
        meta = dict(self.meta)
        if "names" in meta:
            meta["names"] = [meta["names"][i] for i in idx]
        parts = []
        for g in dict.fromkeys(group_of[idx].tolist()):  # groups in order of their first chosen image
            pos = np.flatnonzero(group_of[idx] == g)
            parts.append((pos, self.groups[g][1].subset(row_of[idx[pos]])))
        if len(parts) == 1:
            parts[0][1].meta = meta
            return parts[0][1]
        return MixedTokenSet(parts, meta)

    def save(self, path, half: bool = False) -> Path:
        """Write a ragged .npz atomically (format version 2), images in order: packed_tokens [sum h*w, D] (patch
        rows, image after image), cls_tokens [N, D], grids [N, 2], offsets [N+1] (image i's patch rows are
        offsets[i]:offsets[i+1]), labels, provenance as a TokenSet; with attention packed_cls_attention
        [sum h*w, heads], cls_keys [N, Dk], packed_keys [sum h*w, Dk]. `half`: float16, zip-compressed."""
        rows, grids = self._rows(), self.grids
        cast = (lambda a: a.astype(np.float16)) if half else (lambda a: a)
        arrays = {"packed_tokens": cast(np.concatenate([ts.tokens[r, 1:] for ts, r in rows])),
                  "cls_tokens": cast(np.stack([ts.tokens[r, 0] for ts, r in rows])), "grids": grids,
                  "offsets": np.concatenate([[0], np.cumsum(grids[:, 0] * grids[:, 1])]).astype(np.int64)}
        if self.labels is not None:
            arrays["labels"] = self.labels
        arrays.update(_meta_arrays(self.meta, len(self), TOKENSET_VERSION))
        if self.has_attention:
            arrays["packed_cls_attention"] = cast(np.concatenate([ts.attention[r].T for ts, r in rows]))
            arrays["cls_keys"] = cast(np.stack([ts.keys[r, 0] for ts, r in rows]))
            arrays["packed_keys"] = cast(np.concatenate([ts.keys[r, 1:] for ts, r in rows]))
            arrays.update(_attention_source_array(self.meta))
        return _write_npz(path, arrays, half)


def _validate_groups(groups, where: str) -> None:
    """Groups of distinct grids whose indices cover 0..N-1 once, with the same token width, labels and attention."""
    if not groups or not all(isinstance(ts, TokenSet) for _, ts in groups):
        raise NtcError(f"{where}: groups must be a non-empty list of (indices, TokenSet)")
    for idx, ts in groups:
        if len(idx) != len(ts):
            raise NtcError(f"{where}: {len(idx)} indices for a group of {len(ts)} images")
    order = np.sort(np.concatenate([idx for idx, _ in groups]))
    if not np.array_equal(order, np.arange(len(order))):
        raise NtcError(f"{where}: group indices must cover 0..{len(order) - 1} once each")
    first = groups[0][1]
    if len({ts.grid for _, ts in groups}) != len(groups):
        raise NtcError(f"{where}: two groups share a grid (one group per grid)")
    for _, ts in groups:
        if ts.tokens.shape[2] != first.tokens.shape[2]:
            raise NtcError(f"{where}: token width {ts.tokens.shape[2]} differs from {first.tokens.shape[2]}")
        if (ts.labels is None) != (first.labels is None) or (ts.attention is None) != (first.attention is None):
            raise NtcError(f"{where}: labels and attention must be present in every grid group or in none")


def _validate(tokens, grid, labels, where: str) -> None:
    if not isinstance(tokens, np.ndarray) or not np.issubdtype(tokens.dtype, np.floating):
        raise NtcError(f"{where}: tokens must be a float array, got {getattr(tokens, 'dtype', type(tokens))}")
    if tokens.ndim != 3:
        raise NtcError(f"{where}: tokens must be [N, 1+h*w, D], got ndim {tokens.ndim} shape {list(tokens.shape)}")
    h, w = grid
    if h < 1 or w < 1:
        raise NtcError(f"{where}: grid must be two positive ints, got {grid}")
    if tokens.shape[1] != 1 + h * w:
        raise NtcError(f"{where}: {tokens.shape[1]} tokens per image do not match grid {h}x{w} (+1 CLS = {1 + h * w})")
    if tokens.shape[0] == 0:
        raise NtcError(f"{where}: no token rows")
    if not np.isfinite(tokens).all():
        raise NtcError(f"{where}: tokens contain NaN or Inf")
    if labels is not None:
        if labels.ndim != 1 or len(labels) != len(tokens):
            raise NtcError(f"{where}: labels must be [N={len(tokens)}], got shape {list(labels.shape)}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise NtcError(f"{where}: labels must be integers, got {labels.dtype}")


def _validate_attention(attention, keys, tokens_shape, where: str) -> None:
    """CLS attention and keys come together, one row per image, shaped by the token grid."""
    if (attention is None) != (keys is None):
        raise NtcError(f"{where}: cls_attention and keys come together (ntc-export tokens --attention)")
    if attention is None:
        return
    n, t = tokens_shape[0], tokens_shape[1]
    if attention.ndim != 3 or attention.shape[0] != n or attention.shape[2] != t - 1:
        raise NtcError(f"{where}: cls_attention must be [N={n}, heads, {t - 1}], got {list(attention.shape)}")
    if keys.ndim != 3 or keys.shape[:2] != (n, t):
        raise NtcError(f"{where}: keys must be [N={n}, {t}, Dk], got {list(keys.shape)}")
    if not (np.isfinite(attention).all() and np.isfinite(keys).all()):
        raise NtcError(f"{where}: cls_attention or keys contain NaN or Inf")


def load_tokens(path) -> "TokenSet | MixedTokenSet":
    """Read and validate a token .npz written by TokenSet.save (version 1, or none: one grid) or MixedTokenSet.save
    (version 2: several grids)."""
    path = Path(path)
    if not path.is_file():
        raise NtcError(f"{path}: no such token file")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # zip/npy parsing raises many types; the message names the file
        raise NtcError(f"{path}: not a readable .npz token file ({type(e).__name__})") from None
    version = data.get("format_version", np.array(SINGLE_GRID_VERSION))
    if version.shape != () or not np.issubdtype(version.dtype, np.integer) or not 1 <= version <= TOKENSET_VERSION:
        raise NtcError(f"{path}: token file format version {version.tolist()} is not one this ntc-export reads "
                       f"(1..{TOKENSET_VERSION})")
    return _load_mixed(data, path) if int(version) == 2 else _load_single(data, path)


def _load_single(data: dict, path: Path) -> TokenSet:
    for key in ("tokens", "grid"):
        if key not in data:
            raise NtcError(f"{path}: missing key {key!r} (has {sorted(data)})")
    if data["tokens"].dtype == np.float16:
        data["tokens"] = data["tokens"].astype(np.float32)  # a float16 cache: the models run float32
    grid = data["grid"]
    if grid.shape != (2,) or not np.issubdtype(grid.dtype, np.integer):
        raise NtcError(f"{path}: grid must be 2 integers (h, w), got {grid.dtype} {list(grid.shape)}")
    labels = data.get("labels")
    _validate(data["tokens"], (int(grid[0]), int(grid[1])), labels, str(path))
    attention, keys = (None if k not in data else data[k].astype(np.float32) for k in ("cls_attention", "keys"))
    _validate_attention(attention, keys, data["tokens"].shape, str(path))
    return TokenSet(data["tokens"], (int(grid[0]), int(grid[1])), labels, _meta_of(data, path), attention, keys)


def _meta_of(data: dict, path: Path) -> dict:
    meta = {"path": str(path)}
    if "names" in data:
        meta["names"] = [str(n) for n in data["names"]]
    for key in ("model_sha256", "source"):
        if key in data:
            meta[key] = str(data[key])
    if "image_size" in data:
        meta["image_size"] = int(data["image_size"])
    if "provenance" in data:
        meta["provenance"] = json.loads(str(data["provenance"]))
    if "attention_source" in data:
        meta["attention_source"] = json.loads(str(data["attention_source"]))
    return meta


def _ragged_layout(data: dict, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(grids [N, 2], offsets [N+1]) of a version-2 file, checked against its packed arrays."""
    for key in ("packed_tokens", "cls_tokens", "grids", "offsets"):
        if key not in data:
            raise NtcError(f"{path}: missing key {key!r} of a ragged token file (has {sorted(data)})")
    grids, offsets, packed, cls = data["grids"], data["offsets"], data["packed_tokens"], data["cls_tokens"]
    if grids.ndim != 2 or grids.shape[1] != 2 or len(grids) == 0 or not np.issubdtype(grids.dtype, np.integer) \
            or (grids < 1).any():
        raise NtcError(f"{path}: grids must be positive integers [N, 2], got {grids.dtype} {list(grids.shape)}")
    want = np.concatenate([[0], np.cumsum(grids[:, 0] * grids[:, 1])])
    if offsets.shape != want.shape or not np.array_equal(offsets, want):
        raise NtcError(f"{path}: offsets must be [0, cumulative h*w of each grid] ({len(want)} values)")
    if packed.ndim != 2 or len(packed) != want[-1] or cls.shape != (len(grids), packed.shape[1]):
        raise NtcError(f"{path}: packed_tokens {list(packed.shape)} and cls_tokens {list(cls.shape)} do not match "
                       f"{len(grids)} grids of {int(want[-1])} patches in all")
    return grids.astype(np.int64), want


def _load_mixed(data: dict, path: Path) -> "MixedTokenSet | TokenSet":
    grids, offsets = _ragged_layout(data, path)
    f32 = {k: data[k].astype(np.float32) if data[k].dtype == np.float16 else data[k]
           for k in ("packed_tokens", "cls_tokens", "packed_cls_attention", "cls_keys", "packed_keys") if k in data}
    attention = "packed_cls_attention" in f32
    labels = data.get("labels")
    if labels is not None and labels.shape != (len(grids),):
        raise NtcError(f"{path}: labels must be [N={len(grids)}], got shape {list(labels.shape)}")
    meta = _meta_of(data, path)
    groups = []
    for grid in dict.fromkeys(map(tuple, grids.tolist())):  # grids in order of their first image
        idx = np.flatnonzero((grids == grid).all(1))
        spans = [slice(offsets[i], offsets[i + 1]) for i in idx]
        tokens = np.stack([np.concatenate([f32["cls_tokens"][i:i + 1], f32["packed_tokens"][s]]) for i, s in
                           zip(idx, spans)])
        att = keys = None
        if attention:
            att = np.stack([f32["packed_cls_attention"][s].T for s in spans])
            keys = np.stack([np.concatenate([f32["cls_keys"][i:i + 1], f32["packed_keys"][s]]) for i, s in
                             zip(idx, spans)])
        sub = dict(meta, names=[meta["names"][i] for i in idx]) if "names" in meta else dict(meta)
        groups.append((idx, TokenSet(tokens, grid, None if labels is None else labels[idx], sub, att, keys)))
    if len(groups) == 1:  # a ragged file of one grid reads as the TokenSet it is
        return groups[0][1]
    return MixedTokenSet(groups, meta)


# ---- built-in token sets (cached) ---------------------------------------------------------------------------------


def read_patch_tokens(path) -> np.ndarray:
    """float32 patch tokens [N, h*w, D] from any token file of ours: a TokenSet from `ntc-export tokens` (its CLS row
    dropped) or the `patch_tokens` array `ntc-export decompress` writes."""
    path = Path(path)
    if not path.is_file():
        raise NtcError(f"{path}: no such token file")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            if "tokens" not in files and "patch_tokens" in files:
                tokens = np.asarray(z["patch_tokens"], np.float32)
                if tokens.ndim != 3 or not np.isfinite(tokens).all():
                    raise NtcError(f"{path}: patch_tokens must be finite [N, h*w, D], got shape {list(tokens.shape)}")
                return tokens
    except NtcError:
        raise
    except Exception as e:  # zip/npy parsing raises many types; the message names the file
        raise NtcError(f"{path}: not a readable .npz token file ({type(e).__name__})") from None
    return np.ascontiguousarray(load_tokens(path).patch_tokens, dtype=np.float32)


def split_indices(name: str, split: str, n: int) -> np.ndarray:
    """Deterministic, disjoint image indices of a built-in split."""
    if name not in SPLITS:
        raise NtcError(f"unknown built-in image set {name!r} (choose from {', '.join(BUILTINS)})")
    if split not in SPLITS[name]:
        raise NtcError(f"{name} has no split {split!r} (choose from {', '.join(SPLITS[name])})")
    if split == "all" or name in ("skimage", "stamps"):
        return np.arange(n)
    perm = np.random.default_rng(DIGITS_SEED).permutation(n)
    lo, hi = DIGITS_SPLIT[split]
    return np.sort(perm[lo:hi])


def content_key(images, size: int) -> str:
    """sha256 over the image bytes (with shapes), the image size and the ViT source/derivation."""
    h = hashlib.sha256(f"tokens-v{SINGLE_GRID_VERSION}|{vit.SOURCE_SHA256}|v{vit.DERIVE_VERSION}|{size}".encode())
    for img in images:
        h.update(np.asarray(img.shape, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(img).tobytes())
    return h.hexdigest()


def _cached(path: Path) -> TokenSet | None:
    """The token set cached at `path`, or None (a damaged entry is deleted, to be recomputed)."""
    if path.is_file():
        try:
            return load_tokens(path)
        except NtcError:
            path.unlink(missing_ok=True)
    return None


def _vit_fields(images, size, progress: bool, attention: bool) -> dict:
    """TokenSet arrays of the images: tokens, and with `attention` the CLS attention and keys too."""
    if not attention:
        return {"tokens": extract_tokens(images, size=size, progress=progress)}
    tokens, cls_attention, keys = extract_tokens_attention(images, size=size, progress=progress)
    return {"tokens": tokens, "attention": cls_attention, "keys": keys}


def _attention_meta(attention: bool) -> dict:
    return {"attention_source": attention_source()} if attention else {}


def photo_tokens(size: int = 224, split: str = "all", progress: bool = False, crops_per_photo: int = PHOTO_CROPS,
                 attention: bool = False) -> TokenSet:
    """Tokens of the natural-photograph corpus (ntc_export.data.photos): `crops_per_photo` crops of each photograph
    of the split, cached by photo identities and recipe, stored as float16. Sources that are not installed are
    skipped and named on stderr. `attention`: with the CLS attention and keys (cached apart)."""
    from . import photos as corpus

    size = _check_size(size)
    found, missing = corpus.photos_for(split)
    if missing:
        print(f"photos: {len(missing)} source(s) not installed, skipped: {'; '.join(missing)}", file=sys.stderr)
    if not found:
        raise NtcError("no photograph source is installed: pip install scikit-image (see ntc_export.data.photos)")
    key = hashlib.sha256(f"{corpus.corpus_key(found, crops_per_photo)}|{vit.SOURCE_SHA256}|v{vit.DERIVE_VERSION}|"
                         f"{size}|tokens-v{SINGLE_GRID_VERSION}".encode()).hexdigest()
    path = cache_dir("tokens") / f"photos-{split}-{size}{'-attn' if attention else ''}-{key[:16]}.npz"
    if (cached := _cached(path)) is not None:
        return cached
    parts, names = [], []
    for start in range(0, len(found), 16):  # a few photographs at a time: their crops fit in memory
        chunk = found[start:start + 16]
        images = [c for p in chunk for c in corpus.crops(to_rgb_uint8(p.load(), p.key), p.key, crops_per_photo)]
        names += [f"{p.key}#crop{j}" for p in chunk for j in range(crops_per_photo)]
        parts.append(_vit_fields(images, size, progress, attention))
        if progress:
            print(f"photos {split}: {start + len(chunk)}/{len(found)} photographs", file=sys.stderr)
    g = size // vit.PATCH
    provenance = {"photographs": len(found), "crops_per_photo": crops_per_photo, "split": split,
                  "licences": {p.package: p.licence for p in found},
                  "packages": sorted({p.package for p in found}), "missing": missing}
    meta = {"names": names, "model_sha256": vit.SOURCE_SHA256, "image_size": size,
            "source": f"builtin:photos:{split}", "provenance": provenance, **_attention_meta(attention)}
    fields = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
    ts = TokenSet(grid=(g, g), labels=None, meta=meta, **fields)
    ts.save(path, half=True)
    return load_tokens(path)  # what every later call gets: the float16 values, as float32


def builtin_tokens(name: str, size: int = 224, split: str = "all", progress: bool = False,
                   attention: bool = False) -> TokenSet:
    """Tokens of a built-in image set split, computed once and cached by content hash (with `attention`: plus the
    CLS attention and keys, cached apart)."""
    size = _check_size(size)
    if name == "photos":
        return photo_tokens(size, split, progress, attention=attention)
    provenance = None
    if name == "stamps":  # labelled composites, split by stamp inside ntc_export.data.stamps
        from . import stamps

        split_indices(name, split, 0)  # the split name is checked before any image is made
        images, labels, names = stamps.stamp_images(split)
        provenance = {"classes": list(stamps.CATEGORIES), "views_per_stamp": stamps.VIEWS,
                      "licences": {"tuxpaint-stamps-default": "see /usr/share/doc/tuxpaint-stamps-default/copyright",
                                   "backgrounds": "scikit-image / scikit-learn sample photographs"}}
    else:
        images, labels, names = builtin_images(name)
        idx = split_indices(name, split, len(images))
        images = [images[i] for i in idx]
        labels = None if labels is None else labels[idx]
        names = [names[i] for i in idx]
    key = content_key(images, size)
    path = cache_dir("tokens") / f"{name}-{split}-{size}{'-attn' if attention else ''}-{key[:16]}.npz"
    if (cached := _cached(path)) is not None:
        return cached
    g = size // vit.PATCH
    meta = {"names": names, "model_sha256": vit.SOURCE_SHA256, "image_size": size, "source": f"builtin:{name}:{split}",
            "provenance": provenance, **_attention_meta(attention)}
    ts = TokenSet(grid=(g, g), labels=labels, meta=meta, **_vit_fields(images, size, progress, attention))
    ts.save(path)
    return ts


def images_tokens(images, names, size=224, progress: bool = True, attention: bool = False,
                  min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS, meta: dict | None = None,
                  factor: int = vit.PATCH) -> "TokenSet | MixedTokenSet":
    """Tokens of uint8 HxWx3 images resized per `size` (a side, (H, W), or "native": smart_resize, `factor` 14 or
    28): a TokenSet when every image lands on one grid, else a MixedTokenSet with one ViT run per grid."""
    sizes = target_sizes(images, size, min_pixels, max_pixels, factor)
    meta = {"names": [str(n) for n in names], "model_sha256": vit.SOURCE_SHA256, **(meta or {}),
            **_attention_meta(attention)}
    groups = []
    for hw in dict.fromkeys(sizes):  # one ViT run per distinct size, in order of first image
        idx = np.array([i for i, s in enumerate(sizes) if s == hw], dtype=np.int64)
        fields = _vit_fields([images[i] for i in idx], hw, progress, attention)
        sub = dict(meta, names=[meta["names"][i] for i in idx])
        groups.append((idx, TokenSet(grid=(hw[0] // vit.PATCH, hw[1] // vit.PATCH), meta=sub, **fields)))
    if len(groups) == 1:
        groups[0][1].meta = meta
        return groups[0][1]
    return MixedTokenSet(groups, meta)


def native_photo_tokens(split: str = "val", count: int = 4, max_pixels: int = 280 * 280,
                        attention: bool = False) -> "TokenSet | MixedTokenSet":
    """The first `count` photographs of a corpus split whole, at their own aspect ratio (smart_resize within
    `max_pixels`, factor 28: even grid sides, as Qwen's processors make them, so the 2x2 mergers take them too): a
    native-resolution image set beside the corpus's square crops (the demo validates on both)."""
    from . import photos as corpus

    found, _ = corpus.photos_for(split)
    chosen = found[:count]
    if not chosen:
        raise NtcError(f"no photograph of the {split} split is installed: pip install scikit-image")
    images = [to_rgb_uint8(p.load(), p.key) for p in chosen]
    return images_tokens(images, [f"{p.key}#native" for p in chosen], "native", progress=False, attention=attention,
                         max_pixels=max_pixels, meta={"source": f"builtin:photos:{split}:native"},
                         factor=2 * vit.PATCH)


def concat_sets(sets) -> "TokenSet | MixedTokenSet":
    """Token sets one after the other as one set (images of one grid merged into one group): a TokenSet when they
    share a grid, else a MixedTokenSet."""
    rows: dict[tuple, list] = {}  # grid -> [(index in the result, TokenSet, row)]
    offset = 0
    for ts_or_mixed in sets:
        for idx, ts in ts_or_mixed.by_grid():
            rows.setdefault(ts.grid, []).extend((offset + int(i), ts, r) for r, i in enumerate(idx))
        offset += len(ts_or_mixed)
    groups = [(np.array([i for i, _, _ in found]), _stack([(ts, r) for _, ts, r in found]))
              for found in rows.values()]
    if len(groups) == 1:
        return groups[0][1]
    return MixedTokenSet(groups, {"names": [n for s in sets for n in s.meta.get("names", [])],
                                  "source": " + ".join(str(s.meta.get("source", "")) for s in sets)})


def _stack(rows: list[tuple[TokenSet, int]]) -> TokenSet:
    """One single-grid TokenSet of the given (set, row) images."""
    first = rows[0][0]
    pick = lambda name: None if getattr(first, name) is None else np.stack(  # noqa: E731
        [getattr(ts, name)[r] for ts, r in rows])
    names = [ts.meta.get("names", [str(r)] * (r + 1))[r] for ts, r in rows]
    return TokenSet(pick("tokens"), first.grid, pick("labels"), {**first.meta, "names": names}, pick("attention"),
                    pick("keys"))


def make_tokens(paths_or_builtin, size=224, out=None, split: str = "all", progress: bool = True,
                attention: bool = False, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS,
                merge: int = 1
                ) -> "TokenSet | MixedTokenSet":
    """Tokens from a built-in set name (square `size` only: the cached sets) or a list of image files (`size` a
    side, (H, W) pixels, or "native": each image's aspect ratio, sides rounded to 14 px (28 with `merge` 2) inside
    [min_pixels, max_pixels], see smart_resize); saved to `out` when given (files of several grids as a ragged version-2 file).
    `attention`: with the last block's CLS attention and the penultimate block's keys."""
    if size == "native":
        check_pixel_budget(min_pixels, max_pixels)  # before any image is read
    else:
        _check_hw(size)
    if isinstance(paths_or_builtin, str):
        if not isinstance(size, (int, np.integer)):
            raise NtcError(f"built-in sets come at square sizes (224, 448, ...), not {size}: export the pictures as "
                           "files for WxH or native")
        ts = builtin_tokens(paths_or_builtin, size=size, split=split, progress=progress, attention=attention)
    else:
        paths = [Path(p) for p in paths_or_builtin]
        if not paths:
            raise NtcError("no input images (give image files or a built-in set)")
        images = [read_image(p) for p in paths]
        square = size if isinstance(size, (int, np.integer)) else 0
        meta = {"image_size": square, "source": "files",
                "provenance": {"resize": resize_record(size, min_pixels, max_pixels, vit.PATCH * merge)}}
        ts = images_tokens(images, [str(p) for p in paths], size, progress, attention, min_pixels, max_pixels, meta,
                           vit.PATCH * merge)
    if out is not None:
        ts.save(out)
    return ts


def load_data(data: Path | None, split: str = "val", attention: bool = False):
    """Tokens from a file, or a split of the built-in photo corpus (val = held-out for validation, calib = for
    calibration; the sources installed here, pip-only ones at least). `attention`: the built-in split with the ViT's
    CLS attention and keys (a file has them or not, as written)."""
    if data is not None:
        return load_tokens(data), str(data)
    return builtin_tokens("photos", 224, split=split, attention=attention), f"builtin:photos/{split}@224"


def model_fields(module, tokens: TokenSet, source: str = "the token set") -> dict:
    """The fields a model's `prepare_inputs` reads beside the patch tokens (its `token_fields`: e.g. the ViT's CLS
    attention and keys), from `tokens`; a one-line NtcError when `tokens` lacks them."""
    names = tuple(getattr(module, "token_fields", ()))
    missing = [n for n in names if getattr(tokens, n, None) is None]
    if missing:
        raise NtcError(f"{getattr(module, 'arch', type(module).__name__)} reads the ViT's {' and '.join(missing)} "
                       f"beside the tokens; {source} has none (make it with `ntc-export tokens --attention`)")
    return {n: getattr(tokens, n) for n in names}
