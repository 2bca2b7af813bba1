"""Real visual tokens: images (built-in sets or files) -> DINOv2-S/14 tokens, saved as validated .npz TokenSets."""

import hashlib
import json
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
TOKENSET_VERSION = 1


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


def preprocess(images, size: int) -> np.ndarray:
    """uint8 HxWx3 images -> float32 [N, 3, size, size]: bilinear resize (antialiased when shrinking), ImageNet norm."""
    import torch
    import torch.nn.functional as F

    out = np.empty((len(images), 3, size, size), dtype=np.float32)
    for i, img in enumerate(images):
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise NtcError(f"image {i}: expected uint8 HxWx3, got {img.dtype} {list(img.shape)}")
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255.0
        shrink = img.shape[0] > size or img.shape[1] > size
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
        out[i] = x[0].numpy()
    return (out - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]


def _check_size(size: int) -> int:
    if not isinstance(size, (int, np.integer)) or size < vit.PATCH or size % vit.PATCH:
        raise NtcError(f"image size must be a positive multiple of {vit.PATCH} (e.g. 224 or 448), got {size!r}")
    return int(size)


def extract_tokens(images, size: int = 224, batch: int = 16, progress: bool = True) -> np.ndarray:
    """uint8 HxWx3 images -> ViT tokens float32 [N, 1 + (size/14)^2, 384] (ONNX Runtime, CPU)."""
    return _extract(images, size, batch, progress, lambda x: (vit.run_tokens(x),))[0]


def extract_tokens_attention(images, size: int = 224, batch: int = 16, progress: bool = True
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 HxWx3 images -> (tokens [N, 1+h*w, 384], the last block's CLS attention [N, heads, h*w], the
    penultimate block's keys [N, 1+h*w, 384]), all float32, from one ViT pass."""
    return _extract(images, size, batch, progress, vit.run_tokens_attention)


def _extract(images, size: int, batch: int, progress: bool, run) -> tuple[np.ndarray, ...]:
    """`run` (normalised images -> arrays with the batch first) over the images in batches, concatenated."""
    size = _check_size(size)
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
        task = bar.add_task(f"ViT tokens @ {size}px", total=n)
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
        path = Path(path)
        tokens = self.tokens.astype(np.float16) if half else self.tokens
        arrays = {"tokens": tokens, "grid": np.array(self.grid, dtype=np.int64)}
        if self.labels is not None:
            arrays["labels"] = self.labels
        names = self.meta.get("names") or [str(i) for i in range(len(self))]
        arrays["names"] = np.array([str(n) for n in names])
        arrays["model_sha256"] = np.array(str(self.meta.get("model_sha256", "")))
        arrays["image_size"] = np.array(int(self.meta.get("image_size", 0)), dtype=np.int64)
        arrays["source"] = np.array(str(self.meta.get("source", "")))
        arrays["format_version"] = np.array(TOKENSET_VERSION, dtype=np.int64)
        if self.meta.get("provenance"):
            arrays["provenance"] = np.array(json.dumps(self.meta["provenance"], sort_keys=True))
        if self.attention is not None:
            arrays["cls_attention"] = self.attention.astype(np.float16) if half else self.attention
            arrays["keys"] = self.keys.astype(np.float16) if half else self.keys
            arrays["attention_source"] = np.array(json.dumps(self.meta.get("attention_source") or attention_source(),
                                                             sort_keys=True))
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:  # a file object keeps numpy from appending another .npz
                (np.savez_compressed if half else np.savez)(f, **arrays)
        return path


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


def load_tokens(path) -> TokenSet:
    """Read and validate a TokenSet .npz written by TokenSet.save."""
    path = Path(path)
    if not path.is_file():
        raise NtcError(f"{path}: no such token file")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # zip/npy parsing raises many types; the message names the file
        raise NtcError(f"{path}: not a readable .npz token file ({type(e).__name__})") from None
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
    attention, keys = (None if k not in data else data[k].astype(np.float32) for k in ("cls_attention", "keys"))
    _validate_attention(attention, keys, data["tokens"].shape, str(path))
    return TokenSet(data["tokens"], (int(grid[0]), int(grid[1])), labels, meta, attention, keys)


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
    h = hashlib.sha256(f"tokens-v{TOKENSET_VERSION}|{vit.SOURCE_SHA256}|v{vit.DERIVE_VERSION}|{size}".encode())
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


def _vit_fields(images, size: int, progress: bool, attention: bool) -> dict:
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
                         f"{size}|tokens-v{TOKENSET_VERSION}".encode()).hexdigest()
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


def make_tokens(paths_or_builtin, size: int = 224, out=None, split: str = "all", progress: bool = True,
                attention: bool = False) -> TokenSet:
    """Tokens from a built-in set name or a list of image files; saved to `out` when given. `attention`: with the
    last block's CLS attention and the penultimate block's keys."""
    size = _check_size(size)
    if isinstance(paths_or_builtin, str):
        ts = builtin_tokens(paths_or_builtin, size=size, split=split, progress=progress, attention=attention)
    else:
        paths = [Path(p) for p in paths_or_builtin]
        if not paths:
            raise NtcError("no input images (give image files or a built-in set)")
        images = [read_image(p) for p in paths]
        g = size // vit.PATCH
        meta = {"names": [str(p) for p in paths], "model_sha256": vit.SOURCE_SHA256, "image_size": size,
                "source": "files", **_attention_meta(attention)}
        ts = TokenSet(grid=(g, g), labels=None, meta=meta, **_vit_fields(images, size, progress, attention))
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
