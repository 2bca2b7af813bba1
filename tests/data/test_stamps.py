"""The labelled stamps task: which stamps count, their split, the composite (checked pixel by pixel against a
blend written here) and a one-line error when Tux Paint's stamps are missing."""

import numpy as np
import pytest
from ntc_export.data import stamps
from ntc_export.util.errors import NtcError
from PIL import Image


def _png(path, rgba):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba).save(path)


def _tree(root, count=40):
    rng = np.random.default_rng(0)
    for i in range(count):
        category = stamps.CATEGORIES[i % len(stamps.CATEGORIES)]
        _png(root / category / "sub" / f"s{i}.png", rng.integers(0, 256, (20, 30, 4), dtype=np.uint8))
    _png(root / "animals" / "cartoon" / "drawn.png", np.zeros((8, 8, 4), np.uint8))  # a drawing: not a photo
    _png(root / "animals" / "sub" / "s0_mirror.png", np.zeros((8, 8, 4), np.uint8))  # another view of s0
    _png(root / "symbols" / "x.png", np.zeros((8, 8, 4), np.uint8))  # not one of the six categories


def test_photo_stamps_labels_and_disjoint_splits(tmp_path):
    _tree(tmp_path)
    every = stamps.find_stamps("all", tmp_path)
    assert len(every) == 40 and {s.label for s in every} == set(range(6))
    assert all(s.path.parent.name == "sub" for s in every)
    assert all(stamps.CATEGORIES[s.label] == s.path.parts[-3] for s in every)
    train, val = stamps.find_stamps("train", tmp_path), stamps.find_stamps("val", tmp_path)
    assert {s.key for s in train} | {s.key for s in val} == {s.key for s in every}
    assert not {s.key for s in train} & {s.key for s in val} and len(val) > 0
    with pytest.raises(NtcError, match="tuxpaint-stamps-default"):
        stamps.find_stamps("train", tmp_path / "missing")
    with pytest.raises(NtcError, match="unknown stamps split"):
        stamps.find_stamps("calib", tmp_path)


def test_composite_is_an_alpha_blend_and_repeats():
    background = np.full((300, 400, 3), 200, np.uint8)
    stamp = np.zeros((50, 50, 4), np.uint8)
    stamp[..., 0] = 255
    stamp[10:40, 10:40, 3] = 255  # opaque red square, transparent rim
    a = stamps.composite(stamp, background, "k")
    assert a.shape == (stamps.SIDE, stamps.SIDE, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, stamps.composite(stamp, background, "k"))
    red = (a[..., 0] == 255) & (a[..., 1] == 0)
    plain = (a == 200).all(-1)
    assert red.sum() > 0.08 * stamps.SIDE ** 2  # the square spans >= 0.55 * 0.6 of the side
    assert red.sum() + plain.sum() > 0.95 * stamps.SIDE ** 2  # only the stamp's resampled edge is neither
    assert not np.array_equal(a, stamps.composite(stamp, background, "another key"))
