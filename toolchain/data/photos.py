"""Natural photographs that ship inside packages from PyPI and Debian, for a token corpus no tool has tuned on.

Each source is a package and a curated list of its photographs (drawings, logos, calibration targets and synthetic
patterns left out). A source whose package is not installed is skipped and named with its install command. Every
photo gets a split by a hash of (package, file), so no crop of a validation photograph is ever trained on.
"""

import hashlib
import importlib.metadata
import importlib.util
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..util.errors import NtcError

SPLIT_SHARES = (("train", 80), ("calib", 10), ("val", 10))  # percent of photographs, by hash


@dataclass(frozen=True)
class Photo:
    package: str
    file: str  # path inside the package (or the skimage / sklearn loader name)
    licence: str
    load: object  # () -> uint8 array
    group: str = ""  # photos of one scene share a group, hence a split (default: the photo itself)
    stamp: str = ""  # what changes when the photo's bytes change (file size and mtime, package version)

    @property
    def key(self) -> str:
        return f"{self.package}:{self.file}"

    @property
    def split(self) -> str:
        bucket = int(hashlib.sha256((self.group or self.key).encode()).hexdigest()[:8], 16) % 100
        for name, share in SPLIT_SHARES:
            if bucket < share:
                return name
            bucket -= share
        return SPLIT_SHARES[-1][0]


def _file_loader(path: Path):
    def load():
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    return load


def _files(package: str, root: Path, names, licence: str, group=lambda name: "") -> list[Photo]:
    """A pip package's photographs, named by their path inside it: the key (hence the split and the crops) must not
    depend on where the package is installed, nor the stamp on when (the package's version and the file's size)."""
    version = importlib.metadata.version(package)
    return [Photo(package, n, licence, _file_loader(root / n), group(n), f"{version}:{(root / n).stat().st_size}")
            for n in names if (root / n).is_file()]


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _scene(name: str) -> str:
    """Frames and stereo pairs of one scene (campus/P1070491, building2-1, rocks2-l, ...) -> one group."""
    stem = name.rsplit("/", 1)[0] if "/" in name else name.rsplit(".", 1)[0]
    return "mvtb-data:" + re.sub(r"[-_]?([0-9]+|[lr])$", "", stem)


# ---- sources -------------------------------------------------------------------------------------------------------

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "brick", "grass", "gravel",
                  "hubble_deep_field", "immunohistochemistry", "retina", "clock", "page")
MVTB_PHOTOS = ("building2-1.png", "building2-2.png", "building2-3.png", "butterfly.jpg", "castle.png", "castle2.png",
               "church.png", "eiffel-1.png", "eiffel-2.png", *(f"flowers{i}.png" for i in range(1, 10)),
               "lab-scene.png", "notre-dame.png", "parks.png", "penguins.png", "road.png", "rocks2-l.png",
               "roof.png", "shark1.png", "sharks.png", "street.png", "tomato_124.png", "tomato_14.png",
               "tomato_35.png", "tomato_54.png", "walls-l.png", "image3.jpg", "wheres-wally.png",
               *(f"campus/P10704{n}.png" for n in (91, 93, 94, 95, 96, 97, 98, 99)),
               *(f"campus/P10705{n:02d}.png" for n in (0, 1, 3, 4, 5, 6, 7, 9, 10, 12, 14, 15)),
               "mosaic/aerialphoto.png", "seq/im.001.png")
OPENCV_PHOTOS = ("aero1.jpg", "aero3.jpg", "apple.jpg", "baboon.jpg", "basketball1.png",
                 "building.jpg", "butterfly.jpg", "fruits.jpg", "home.jpg", "leuvenA.jpg", "licenseplate_motion.jpg",
                 "messi5.jpg", "orange.jpg", "rubberwhale1.png", "smarties.png", "squirrel_cls.jpg", "stuff.jpg",
                 "box_in_scene.png", "ela_original.jpg", "text_defocus.jpg")
# Plasma ships illustrations and abstract art beside its photographs: these are the photographs.
PLASMA_PHOTOS = ("BytheWater", "ColdRipple", "ColorfulCups", "EveningGlow", "FallenLeaf", "Grey", "Kite", "MilkyWay",
                 "OneStandsOut", "Path", "Volna", "summer_1am")
LXQT_PHOTOS = ("Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg", "appleflower.png",
               "butterfly.png", "cloud.png", "drop.png", "flowers.png", "fog.jpg")
OPENCV_DIR = Path("/usr/share/doc/opencv-doc/examples/data")


def _skimage() -> list[Photo]:
    import skimage.data

    version = skimage.__version__
    return [Photo("scikit-image", name, "see skimage.data (public domain / CC0 per image)",
                  lambda name=name: getattr(skimage.data, name)(), stamp=version) for name in SKIMAGE_PHOTOS]


def _sklearn() -> list[Photo]:
    root = Path(importlib.util.find_spec("sklearn").origin).parent / "datasets" / "images"
    return _files("scikit-learn", root, ("china.jpg", "flower.jpg"), "CC BY 2.0 (sklearn/datasets/images/README.txt)")


def _package_root(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


def _mvtb() -> list[Photo]:
    root = _package_root("mvtbdata")
    return _files("mvtb-data", root / "images", MVTB_PHOTOS, "MIT (mvtb-data)", _scene) if root else []


def _foolbox() -> list[Photo]:
    root = _package_root("foolbox")
    if root is None:
        return []
    names = sorted(p.name for p in (root / "data").glob("imagenet_*.jpg"))
    return _files("foolbox", root / "data", names, "ImageNet samples shipped by foolbox (MIT); ImageNet terms apply")


def _debian(package: str, paths: list[Path]) -> list[Photo]:
    licence = f"see /usr/share/doc/{package}/copyright"
    return [Photo(package, str(p), licence, _file_loader(p), stamp=_stamp(p)) for p in paths]


def _plasma() -> list[Photo]:
    # One picture per wallpaper: its largest rendition.
    folders = [Path("/usr/share/wallpapers") / n / "contents" / "images" for n in PLASMA_PHOTOS]
    folders = [f for f in folders if f.is_dir()]
    best = [max(f.iterdir(), key=lambda p: p.stat().st_size) for f in folders if any(f.iterdir())]
    return _debian("plasma-workspace-wallpapers", best)


def _lomiri() -> list[Photo]:
    return _debian("lomiri-wallpapers-16.04", sorted(Path("/usr/share/backgrounds").glob("*_by_*.jpg")))


def _lxqt() -> list[Photo]:
    root = Path("/usr/share/lxqt/wallpapers")
    return _debian("lxqt-themes", [root / n for n in LXQT_PHOTOS if (root / n).is_file()])


def _opencv() -> list[Photo]:
    return _debian("opencv-doc", [OPENCV_DIR / n for n in OPENCV_PHOTOS if (OPENCV_DIR / n).is_file()])


GCOMPRIS_RCC = Path("/usr/share/gcompris-qt/rcc")
# Activities whose pictures are photographs (the word games use drawings), with the folders to read.
GCOMPRIS_PHOTOS = {"erase": ("resource/",), "explore_farm_animals": ("animals/",),
                   "explore_world_animals": ("animals/",), "explore_monuments": ("resource/",),
                   "categorization": ("images/tools/", "images/renewable/", "images/monuments/", "images/fishes/")}


def _gcompris() -> list[Photo]:
    from .qt_resources import rcc_files

    photos, seen = [], set()
    for activity, folders in GCOMPRIS_PHOTOS.items():
        path = GCOMPRIS_RCC / f"{activity}.rcc"
        if not path.is_file():
            continue
        stamp = _stamp(path)
        for name, data in sorted(rcc_files(path.read_bytes(), str(path)).items()):
            stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            if not name.endswith((".webp", ".jpg")) or not any(f in name for f in folders) or stem in seen:
                continue  # the same monument appears in two activities: keep one
            seen.add(stem)
            photos.append(Photo("gcompris-qt-data", f"{path.name}:{name}", "see /usr/share/doc/gcompris-qt-data/copyright",
                                lambda data=data: _decode(data), stamp=stamp))
    return photos


def _decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


# name, loader, install hint
SOURCES = (
    ("scikit-image", _skimage, "pip install scikit-image"),
    ("scikit-learn", _sklearn, "pip install scikit-learn"),
    ("mvtb-data", _mvtb, "pip install mvtb-data"),
    ("foolbox", _foolbox, "pip install --no-deps foolbox"),
    ("gcompris-qt-data", _gcompris, "apt-get install --no-install-recommends gcompris-qt-data"),
    ("plasma-workspace-wallpapers", _plasma, "apt-get install --no-install-recommends plasma-workspace-wallpapers"),
    ("lomiri-wallpapers-16.04", _lomiri, "apt-get install --no-install-recommends lomiri-wallpapers-16.04"),
    ("lxqt-themes", _lxqt, "apt-get install --no-install-recommends lxqt-themes"),
    ("opencv-doc", _opencv, "apt-get download opencv-doc && dpkg-deb -x opencv-doc_*.deb / (its examples/data)"),
)


def catalogue() -> tuple[list[Photo], list[str]]:
    """(every photograph found, install hints of the sources that are missing)."""
    photos, missing = [], []
    for name, find, hint in SOURCES:
        found = find()
        photos += found
        if not found:
            missing.append(f"{name} ({hint})")
    return photos, missing


def photos_for(split: str) -> tuple[list[Photo], list[str]]:
    """The photographs of one split ("all" for every one), and the missing sources' install hints."""
    if split not in ("all", *(s for s, _ in SPLIT_SHARES)):
        raise NtcError(f"unknown photos split {split!r}; choose all, train, calib or val")
    photos, missing = catalogue()
    return [p for p in photos if split == "all" or p.split == split], missing


def crops(image: np.ndarray, key: str, count: int, scales=(0.35, 1.0)) -> list[np.ndarray]:
    """`count` square crops of a photo at random scales (fraction of the short side) and positions, every other one
    mirrored; seeded by the photo's key so a corpus rebuilds identically."""
    rng = np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:8], 16))
    h, w = image.shape[:2]
    out = []
    for i in range(count):
        side = max(16, int(min(h, w) * (1.0 if i == 0 else rng.uniform(*scales))))  # crop 0: the full centre square
        y = (h - side) // 2 if i == 0 else int(rng.integers(0, h - side + 1))
        x = (w - side) // 2 if i == 0 else int(rng.integers(0, w - side + 1))
        crop = image[y:y + side, x:x + side]
        out.append(np.ascontiguousarray(crop[:, ::-1] if i % 2 else crop))
    return out


def corpus_key(photos: list[Photo], crops_per_photo: int) -> str:
    """What a corpus's tokens depend on besides the ViT and the size: each photo's identity and the crop recipe."""
    h = hashlib.sha256(f"photos-v1|{crops_per_photo}".encode())
    for p in photos:
        h.update(f"{p.key}|{p.stamp}\n".encode())
    return h.hexdigest()
