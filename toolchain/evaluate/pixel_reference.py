"""What a user would do instead of a token codec: keep the picture, coded with a standard image codec, and run the
vision encoder again when the tokens are needed.

A pixel route is (format, quality) through Pillow: each image's picture at the ViT's input size of its grid (resized
as `ntc-export tokens` resized it, rounded to 8 bits) is coded, decoded, and re-encoded by the same ViT; bytes per
image are the coded file's length, fidelity is the re-encoded tokens against the token file's own tokens. Pictures are
found from a token file's provenance (built-in sets by name, files by path) or in an `--images` folder; a token file
whose pictures cannot all be found gets no pixel rows, with one line saying why.
"""

import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..util.errors import NtcError

FAMILY = "pixels"
FORMATS = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}  # route name -> Pillow format
# Default sweep: AVIF over its useful range, WebP and JPEG at the qualities users pick.
DEFAULT_ROUTES = (("avif", 30), ("avif", 50), ("avif", 70), ("webp", 50), ("webp", 85), ("jpeg", 75), ("jpeg", 95))
MATCH_COSINE = 0.995  # the uncoded pictures' tokens must reproduce the file's tokens: else they are other pictures
MATCH_SAMPLE = 8


@dataclass(frozen=True)
class PixelRoute:
    """One picture codec at one quality, through Pillow."""

    codec: str
    quality: int

    @property
    def name(self) -> str:
        return f"{self.codec} q{self.quality} -> ViT"

    @property
    def arch(self) -> str:
        return f"{self.codec}-q{self.quality}"

    def encode(self, picture: np.ndarray) -> bytes:
        """A uint8 HxWx3 picture -> the coded file's bytes (Pillow's defaults besides the quality)."""
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(picture).save(buf, format=FORMATS[self.codec], quality=self.quality)
        return buf.getvalue()

    @staticmethod
    def decode(data: bytes) -> np.ndarray:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))


def parse_route(text: str) -> PixelRoute:
    """"avif:50" -> PixelRoute("avif", 50); a one-line NtcError otherwise."""
    codec, _, quality = str(text).partition(":")
    codec = codec.strip().lower()
    if codec not in FORMATS or not quality.strip().isdigit() or not 1 <= int(quality) <= 100:
        raise NtcError(f"pixel route {text!r}: expected FORMAT:QUALITY with FORMAT one of {', '.join(FORMATS)} and "
                       "QUALITY 1..100 (e.g. avif:50)")
    return PixelRoute(codec, int(quality))


def check_routes(routes) -> list[PixelRoute]:
    """Routes whose format this Pillow can write (checked before any work)."""
    from PIL import features

    routes = [r if isinstance(r, PixelRoute) else parse_route(r) for r in routes]
    for r in routes:
        if r.codec in ("webp", "avif") and not features.check(r.codec):
            raise NtcError(f"this Pillow cannot write {r.codec.upper()} (pip install 'pillow>=11.3')")
    return routes


# ---- finding the pictures a token file came from ------------------------------------------------------------------


def _photo_pictures(names: list[str]) -> list[np.ndarray]:
    """Photo-corpus images named `key#cropJ` or `key#native`: each photo loaded once, cropped as the corpus crops."""
    from ..data import photos as corpus
    from ..data.pixels import to_rgb_uint8
    from ..data.tokens import PHOTO_CROPS

    by_key = {p.key: p for p in corpus.catalogue()[0]}
    out, loaded = [], {}
    for name in names:
        key, _, part = name.rpartition("#")
        if key not in by_key:
            raise NtcError(f"photograph {key!r} is not installed here")
        if key not in loaded:
            loaded = {key: to_rgb_uint8(by_key[key].load(), key)}  # names come grouped by photo: keep one
        image = loaded[key]
        if part == "native":
            out.append(image)
        elif part.startswith("crop") and part[4:].isdigit():
            out.append(corpus.crops(image, key, PHOTO_CROPS)[int(part[4:])])
        else:
            raise NtcError(f"{name!r}: not a photo-corpus image name")
    return out


def _builtin_pictures(name: str, names: list[str]) -> list[np.ndarray]:
    from ..data.tokens import builtin_images

    images, _, all_names = builtin_images(name)
    index = {n: i for i, n in enumerate(all_names)}
    missing = [n for n in names if n not in index]
    if missing:
        raise NtcError(f"{missing[0]!r} is not a picture of the built-in {name} set")
    return [images[index[n]] for n in names]


def _folder_pictures(folder: Path, names: list[str]) -> list[np.ndarray]:
    from ..data.tokens import read_image

    return [read_image(folder / Path(n).name) for n in names]


def find_pictures(tokens, images: Path | None = None) -> list[np.ndarray]:
    """The source picture of every image of a token set, in its order: from `images` (a folder holding each
    recorded name's file) or from the set's provenance. NtcError (one line) when one cannot be found."""
    from ..data.tokens import read_image

    names = list(tokens.meta.get("names") or [])
    if len(names) != len(tokens):
        raise NtcError("the token file names no source pictures (made before names were recorded)")
    if images is not None:
        return _folder_pictures(Path(images), names)
    source = str(tokens.meta.get("source", ""))
    if source.startswith("builtin:photos"):
        return _photo_pictures(names)
    if source.startswith("builtin:"):
        return _builtin_pictures(source.split(":")[1], names)
    if source == "files":
        return [read_image(n) for n in names]
    raise NtcError(f"the token file's pictures cannot be found from its source {source!r}: give --images FOLDER")


def pictures_by_grid(tokens, pictures: list[np.ndarray]) -> list[tuple[np.ndarray, object, list[np.ndarray]]]:
    """(indices, single-grid TokenSet, pictures at that grid's pixel size) per grid group of a token set."""
    from ..data import vit
    from ..data.tokens import resized_pictures

    return [(idx, ts, resized_pictures([pictures[i] for i in idx], (ts.grid[0] * vit.PATCH, ts.grid[1] * vit.PATCH)))
            for idx, ts in tokens.by_grid()]


def check_match(groups) -> float:
    """Cosine between the file's tokens and the ViT's tokens of the uncoded pictures, on a few images: the pictures
    found must be those the tokens came from (NtcError otherwise)."""
    from ..data import vit
    from ..data.tokens import extract_tokens
    from .fidelity import token_cosine

    idx, ts, pictures = groups[0]
    n = min(MATCH_SAMPLE, len(idx))
    again = extract_tokens(pictures[:n], size=(ts.grid[0] * vit.PATCH, ts.grid[1] * vit.PATCH), progress=False)[:, 1:]
    cos = token_cosine(again.reshape(-1, again.shape[-1]), ts.patch_tokens[:n].reshape(-1, again.shape[-1]))
    if cos < MATCH_COSINE:
        raise NtcError(f"the pictures found give tokens at cosine {cos:.4f} to the file's: not the pictures these "
                       "tokens came from (other ViT or resize?)")
    return cos


def matched_pictures(tokens, images: Path | None = None) -> list[np.ndarray]:
    """The source pictures of a token set (find_pictures), checked to give back its tokens (check_match)."""
    pictures = find_pictures(tokens, images)
    check_match(pictures_by_grid(tokens, pictures))
    return pictures


def route_results(route: PixelRoute, groups, progress: bool = False):
    """Per grid group: (indices, TokenSet, coded bytes per image, re-encoded patch tokens [n, h*w, D], decode ms per
    image as measured here)."""
    from ..data import vit
    from ..data.tokens import extract_tokens

    out = []
    for idx, ts, pictures in groups:
        coded = [route.encode(p) for p in pictures]
        t0 = time.perf_counter()
        decoded = [route.decode(c) for c in coded]
        decode_ms = (time.perf_counter() - t0) * 1e3 / len(coded)
        size = (ts.grid[0] * vit.PATCH, ts.grid[1] * vit.PATCH)
        tokens = extract_tokens(decoded, size=size, progress=progress)[:, 1:]
        out.append((idx, ts, [len(c) for c in coded], tokens, decode_ms))
    return out
