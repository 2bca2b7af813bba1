"""A labelled natural-image task: Tux Paint's photographic stamps in six categories, composited onto photographs.

Debian's `tuxpaint-stamps-default` ships photographic cut-outs (PNG with alpha) in category folders; its drawings
live in `cartoon` folders and are left out. Each stamp is pasted, at a seeded scale and position, onto a seeded crop
of a scikit-image / scikit-learn photograph (always installed with pip), giving one 224 px image per stamp with its
category as the label. Stamps split train / val by a hash of their path, and backgrounds by the photo corpus's split
(validation stamps sit on calibration / validation photographs), so the probe is fitted and scored on disjoint
stamps and scenes.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..util.errors import NtcError

STAMPS_DIR = Path("/usr/share/tuxpaint/stamps")
CATEGORIES = ("animals", "food", "household", "plants", "town", "vehicles")
INSTALL = "apt-get install --no-install-recommends tuxpaint-stamps-default"
VAL_SHARE = 30  # percent of stamps, by hash
SIDE = 224  # composite side in pixels (resized again to the token size)
VARIANTS = ("_mirror", "_flip", "_back")  # alternative views of one stamp: skipped
VIEWS = 3  # composites per stamp (different backgrounds, scales and positions)


@dataclass(frozen=True)
class Stamp:
    key: str  # package:path inside the stamps folder
    path: Path
    label: int

    @property
    def split(self) -> str:
        return "val" if int(hashlib.sha256(self.key.encode()).hexdigest()[:8], 16) % 100 < VAL_SHARE else "train"


def find_stamps(split: str, root: Path = STAMPS_DIR) -> list[Stamp]:
    """The photographic stamps of one split ("all", "train" or "val"), sorted by path."""
    if split not in ("all", "train", "val"):
        raise NtcError(f"unknown stamps split {split!r}; choose all, train or val")
    if not root.is_dir():
        raise NtcError(f"the labelled stamps task needs Tux Paint's stamps ({root} is missing): {INSTALL}")
    stamps = [Stamp(f"tuxpaint-stamps-default:{path.relative_to(root)}", path, label)
              for label, category in enumerate(CATEGORIES) for path in sorted((root / category).rglob("*.png"))
              if "cartoon" not in path.relative_to(root).parts and not path.stem.endswith(VARIANTS)]
    if not stamps:
        raise NtcError(f"{root}: no photographic stamps in {', '.join(CATEGORIES)}")
    return [s for s in stamps if split == "all" or s.split == split]


def backgrounds(split: str) -> list[np.ndarray]:
    """Photographs for the backgrounds of one stamps split (pip-installable sources only, so results repeat)."""
    from .photos import SOURCES
    from .pixels import to_rgb_uint8

    pip_sources = {name: find for name, find, _ in SOURCES if name in ("scikit-image", "scikit-learn")}
    wanted = ("train",) if split == "train" else ("calib", "val")
    photos = [p for find in pip_sources.values() for p in find() if p.split in wanted]
    if not photos:
        raise NtcError(f"no background photographs for the {split} stamps (pip install scikit-image scikit-learn)")
    return [to_rgb_uint8(p.load(), p.key) for p in photos]


def composite(stamp_rgba: np.ndarray, background: np.ndarray, key: str) -> np.ndarray:
    """The stamp at 55-85% of a SIDE x SIDE crop of `background`, seeded position, alpha-blended -> uint8 HxWx3."""
    from PIL import Image

    rng = np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:8], 16))
    h, w = background.shape[:2]
    side = int(min(h, w) * rng.uniform(0.4, 1.0))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    canvas = Image.fromarray(background[y:y + side, x:x + side]).resize((SIDE, SIDE), Image.BILINEAR)
    stamp = Image.fromarray(stamp_rgba)
    fit = SIDE * rng.uniform(0.55, 0.85) / max(stamp.size)
    stamp = stamp.resize((max(1, round(stamp.size[0] * fit)), max(1, round(stamp.size[1] * fit))), Image.BILINEAR)
    px = int(rng.integers(0, SIDE - stamp.size[0] + 1))
    py = int(rng.integers(0, SIDE - stamp.size[1] + 1))
    canvas.paste(stamp, (px, py), stamp)
    return np.asarray(canvas.convert("RGB"))


def stamp_images(split: str, root: Path = STAMPS_DIR, views: int = VIEWS
                 ) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """(composites, labels int64, names "key#view") of one split: `views` composites per stamp."""
    from PIL import Image

    stamps = find_stamps(split, root)
    pools = {name: backgrounds(name) for name in sorted({s.split for s in stamps})}
    images, labels, names = [], [], []
    for i, s in enumerate(stamps):
        pool = pools[s.split]
        with Image.open(s.path) as im:
            rgba = np.asarray(im.convert("RGBA"))
        for v in range(views):
            images.append(composite(rgba, pool[(i * views + v) % len(pool)], f"{s.key}#{v}"))
            labels.append(s.label)
            names.append(f"{s.key}#{v}")
    return images, np.array(labels, dtype=np.int64), names
