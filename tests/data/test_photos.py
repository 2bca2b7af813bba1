"""The natural-photograph corpus: Qt resource reading, photo-level splits, crops, cached float16 tokens."""

import importlib.util
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from ntc_export.data import photos, tokens
from ntc_export.data.qt_resources import rcc_files
from ntc_export.util.errors import NtcError


def _rcc(files: dict[str, bytes], compress: set[str]) -> bytes:
    """A version-2 Qt resource with one folder holding `files` (written here from the format description)."""
    names, data = b"", b""
    name_off, data_off = {}, {}
    for n in ["dir", *files]:
        name_off[n] = len(names)
        names += struct.pack(">HI", len(n), 0) + n.encode("utf-16-be")
    for n, b in files.items():
        data_off[n] = len(data)
        blob = struct.pack(">I", len(b)) + zlib.compress(b) if n in compress else b
        data += struct.pack(">I", len(blob)) + blob
    entries = [struct.pack(">IHII", 0, 2, 1, 1) + bytes(8),  # root: 1 child at index 1
               struct.pack(">IHII", name_off["dir"], 2, len(files), 2) + bytes(8)]
    for n in files:
        entries.append(struct.pack(">IHHHI", name_off[n], 1 if n in compress else 0, 0, 0, data_off[n]) + bytes(8))
    tree = b"".join(entries)
    head = 20
    return b"qres" + struct.pack(">IIII", 2, head, head + len(tree), head + len(tree) + len(data)) + tree + data + names


def test_qt_resource_reader_plain_and_zlib():
    blob = _rcc({"a.webp": b"plain bytes", "b.jpg": b"squeezed " * 50}, compress={"b.jpg"})
    assert rcc_files(blob) == {"dir/a.webp": b"plain bytes", "dir/b.jpg": b"squeezed " * 50}
    with pytest.raises(NtcError, match="not a Qt resource file"):
        rcc_files(b"PK\x03\x04" + blob)
    with pytest.raises(NtcError, match="corrupt Qt resource file"):
        rcc_files(blob[:40])


def test_splits_are_by_photo_and_scene_and_stable():
    found, _ = photos.catalogue()
    assert found, "scikit-image's photographs are always installed"
    by_split = {s: {p.key for p in found if p.split == s} for s in ("train", "calib", "val")}
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["calib"])
    groups = {}
    for p in found:
        if p.group:
            groups.setdefault(p.group, set()).add(p.split)
    assert all(len(s) == 1 for s in groups.values()), "frames of one scene must share a split"
    assert [p.split for p in found] == [p.split for p in photos.catalogue()[0]]


def test_package_photos_do_not_depend_on_the_install_location(monkeypatch, tmp_path):
    """A pip package's photo is keyed by its path inside the package: installed elsewhere (another venv, another
    machine), the same photo lands in the same split with the same crops."""
    here = photos._sklearn()
    assert [p.key for p in here] == ["scikit-learn:china.jpg", "scikit-learn:flower.jpg"]
    origin = Path(importlib.util.find_spec("sklearn").origin).parent / "datasets" / "images"
    moved = tmp_path / "elsewhere" / "sklearn"
    (moved / "datasets" / "images").mkdir(parents=True)
    for name in ("china.jpg", "flower.jpg"):
        (moved / "datasets" / "images" / name).write_bytes((origin / name).read_bytes())
    monkeypatch.setattr(photos.importlib.util, "find_spec", lambda name: type("Spec", (), {
        "origin": str(moved / "__init__.py")})())
    there = photos._sklearn()
    assert [(p.key, p.split, p.stamp) for p in there] == [(p.key, p.split, p.stamp) for p in here]
    assert np.array_equal(there[0].load(), here[0].load())


def test_crops_are_seeded_square_and_mirrored():
    image = np.arange(60 * 80 * 3, dtype=np.uint32).reshape(60, 80, 3).astype(np.uint8)
    a, b = photos.crops(image, "k", 4), photos.crops(image, "k", 4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(c.shape[0] == c.shape[1] and c.shape[2] == 3 for c in a)
    assert np.array_equal(a[0], image[:, 10:70])  # crop 0: the centre square of the short side
    assert not np.array_equal(photos.crops(image, "other", 4)[2], a[2])


def test_photo_tokens_cached_as_float16(monkeypatch, tmp_path):
    monkeypatch.setenv("NTC_EXPORT_CACHE", str(tmp_path))
    two = [photos.Photo("scikit-image", n, "test", lambda n=n: getattr(__import__("skimage.data").data, n)(), stamp="x")
           for n in ("astronaut", "coffee")]
    monkeypatch.setattr(photos, "photos_for", lambda split: (two, ["missing-pkg (apt-get install it)"]))
    ts = tokens.photo_tokens(224, "val", crops_per_photo=2)
    assert ts.tokens.shape == (4, 257, 384) and ts.tokens.dtype == np.float32
    assert ts.meta["names"][:2] == ["scikit-image:astronaut#crop0", "scikit-image:astronaut#crop1"]
    assert ts.meta["provenance"]["missing"] == ["missing-pkg (apt-get install it)"]
    direct = tokens.extract_tokens(photos.crops(tokens.to_rgb_uint8(two[0].load()), two[0].key, 2), 224, progress=False)
    assert np.abs(ts.tokens[:2] - direct).max() <= np.abs(direct).max() * 2 ** -10  # float16 storage, nothing else
    monkeypatch.setattr(tokens, "extract_tokens", lambda *a, **k: pytest.fail("cache miss on the second call"))
    assert np.array_equal(tokens.photo_tokens(224, "val", crops_per_photo=2).tokens, ts.tokens)
