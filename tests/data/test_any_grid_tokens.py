"""Any grid, data layer: native-resolution resizing (Qwen2-VL's smart_resize rule, factor 14), W x H sizes, ragged
(version 2) token files of several grids beside unchanged version-1 files, and the CLI's one-line refusals."""

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from ntc_export.cli import main
from ntc_export.data import tokens as T
from ntc_export.data import vit
from ntc_export.data.pixels import to_rgb_uint8
from ntc_export.util.errors import NtcError
from PIL import Image
from pinned_photos import pinned_photos

QWEN_MIN, QWEN_MAX = 56 * 56, 28 * 28 * 1280  # Qwen2-VL's image processor defaults


def qwen_smart_resize():
    """transformers' own smart_resize (the PIL processor module needs no torchvision), or None."""
    for module in ("image_processing_pil_qwen2_vl", "image_processing_qwen2_vl"):
        try:
            mod = __import__(f"transformers.models.qwen2_vl.{module}", fromlist=["smart_resize"])
            return mod.smart_resize
        except ImportError:
            continue
    return None


def test_smart_resize_hand_computed_values():
    # Qwen2-VL's documented case: 1280x720 with factor 28 (patch 14 x 2x2 merge) -> 1288x728 px, 46x26 merged cells.
    assert T.smart_resize(720, 1280, 28, QWEN_MIN, QWEN_MAX) == (728, 1288)
    # Ours, factor 14: 51x91 rounded patches = 909,636 px > 672^2, so beta = sqrt(921600/451584) = 10/7 and
    # floor(720*0.7/14) = 36, floor(1280*0.7/14) = 64 patches: exactly 672^2 px.
    assert T.smart_resize(720, 1280) == (504, 896)
    assert T.smart_resize(288, 512) == (294, 518)  # 20.6 -> 21, 36.6 -> 37 patches: inside the budget, rounded
    assert T.smart_resize(8, 8) == (56, 56)  # 14x14 < 56*56: grown by 7 and ceiled to 4x4 patches
    assert T.smart_resize(13, 26) == (42, 84)  # 14x28 < 56*56: beta = sqrt(3136/338), ceil 2.8 -> 3, 5.7 -> 6
    with pytest.raises(NtcError, match="aspect ratio over 200"):
        T.smart_resize(10, 2010)
    with pytest.raises(NtcError, match="min_pixels <= max_pixels"):
        T.smart_resize(100, 100, 14, 5000, 4000)


def test_smart_resize_equals_transformers_on_random_sizes():
    ref = qwen_smart_resize()
    if ref is None:
        pytest.skip("transformers' Qwen2-VL image processor is not importable here")
    rng = np.random.default_rng(0)
    sizes = [(int(h), int(w)) for h, w in rng.integers(1, 5000, size=(3000, 2)) if max(h, w) / min(h, w) <= 200]
    sizes += [(720, 1280), (1080, 1920), (224, 224), (14, 14), (1, 150), (9, 1800)]
    for factor, lo, hi in ((14, T.MIN_PIXELS, T.MAX_PIXELS), (28, QWEN_MIN, QWEN_MAX), (14, 196, 28 * 28)):
        ours = [T.smart_resize(h, w, factor, lo, hi) for h, w in sizes]
        assert ours == [tuple(ref(h, w, factor=factor, min_pixels=lo, max_pixels=hi)) for h, w in sizes]


def test_parse_size():
    assert T.parse_size("224") == 224 and T.parse_size("448") == 448 and T.parse_size(" Native ") == "native"
    assert T.parse_size("448x252") == (252, 448)  # W x H in, (H, W) out
    for text, message in (("225", "multiple of 14"), ("10x10", "multiples of 14"), ("0", "multiple of 14"),
                          ("448x250", "multiples of 14"), ("big", "WxH"), ("224x", "WxH")):
        with pytest.raises(NtcError, match=message):
            T.parse_size(text)


# ---- ragged files -------------------------------------------------------------------------------------------------


def synthetic(grids, seed=0, labels=True, attention=True, dim=8, heads=3) -> T.MixedTokenSet:
    """A MixedTokenSet of random tokens: grids[i] is image i's grid (no ViT needed)."""
    rng = np.random.default_rng(seed)
    n = len(grids)
    meta = {"names": [f"img{i}" for i in range(n)], "model_sha256": "x" * 64, "source": "synthetic",
            "provenance": {"resize": {"mode": "native"}}}
    groups = []
    for grid in dict.fromkeys(grids):
        idx = np.array([i for i, g in enumerate(grids) if g == grid])
        t = 1 + grid[0] * grid[1]
        att = rng.random((len(idx), heads, t - 1)).astype(np.float32) if attention else None
        keys = rng.standard_normal((len(idx), t, dim + 1)).astype(np.float32) if attention else None
        sub = dict(meta, names=[meta["names"][i] for i in idx])
        groups.append((idx, T.TokenSet(rng.standard_normal((len(idx), t, dim)).astype(np.float32), grid,
                                       idx * 10 if labels else None, sub, att, keys)))
    return T.MixedTokenSet(groups, meta)


GRIDS = [(3, 5), (4, 4), (3, 5), (1, 7), (4, 4), (3, 5)]


def assert_same(a: T.MixedTokenSet, b: T.MixedTokenSet, exact=True):
    assert len(a) == len(b) and a.meta["names"] == b.meta["names"]
    assert np.array_equal(a.grids, b.grids) and (a.labels is None) == (b.labels is None)
    for (ia, ta), (ib, tb) in zip(a.by_grid(), b.by_grid(), strict=True):
        assert np.array_equal(ia, ib) and ta.grid == tb.grid and ta.meta["names"] == tb.meta["names"]
        for x, y in ((ta.tokens, tb.tokens), (ta.attention, tb.attention), (ta.keys, tb.keys), (ta.labels, tb.labels)):
            assert (x is None and y is None) or (np.array_equal(x, y) if exact else np.allclose(x, y, 1e-3, 1e-3))


def test_ragged_round_trip_is_bit_exact(tmp_path):
    ts = synthetic(GRIDS)
    assert len(ts) == 6 and ts.labels.tolist() == [0, 10, 20, 30, 40, 50]
    assert [(i.tolist(), g.grid) for i, g in ts.by_grid()] == [([0, 2, 5], (3, 5)), ([1, 4], (4, 4)), ([3], (1, 7))]
    back = T.load_tokens(ts.save(tmp_path / "mixed.npz"))
    assert isinstance(back, T.MixedTokenSet) and back.meta["path"] == str(tmp_path / "mixed.npz")
    assert_same(ts, back)
    assert back.meta["provenance"] == ts.meta["provenance"] and back.by_grid()[1][1].meta["names"] == ["img1", "img4"]
    with np.load(tmp_path / "mixed.npz") as z:  # the documented layout, independently of the loader
        assert int(z["format_version"]) == T.TOKENSET_VERSION == 2 and "tokens" not in z.files
        assert z["grids"].tolist() == [list(g) for g in GRIDS]
        assert z["offsets"].tolist() == np.concatenate([[0], np.cumsum([h * w for h, w in GRIDS])]).tolist()
        third = ts.by_grid()[0][1].tokens[1]  # image 2: row 1 of the 3x5 group
        np.testing.assert_array_equal(z["packed_tokens"][15 + 16:15 + 16 + 15], third[1:])
        np.testing.assert_array_equal(z["cls_tokens"][2], third[0])
        np.testing.assert_array_equal(z["packed_cls_attention"][31:46].T, ts.by_grid()[0][1].attention[1])
    half = T.load_tokens(ts.save(tmp_path / "half.npz", half=True))
    assert half.by_grid()[0][1].tokens.dtype == np.float32
    assert_same(ts, half, exact=False)
    np.testing.assert_array_equal(half.by_grid()[0][1].tokens,
                                  ts.by_grid()[0][1].tokens.astype(np.float16).astype(np.float32))
    plain = synthetic(GRIDS, labels=False, attention=False)
    assert_same(plain, T.load_tokens(plain.save(tmp_path / "plain.npz")))


def test_mixed_subset_and_single_grid_guards(tmp_path):
    ts = synthetic(GRIDS)
    sub = ts.subset([4, 3, 1])
    assert isinstance(sub, T.MixedTokenSet) and sub.meta["names"] == ["img4", "img3", "img1"]
    assert sub.grids.tolist() == [[4, 4], [1, 7], [4, 4]] and sub.labels.tolist() == [40, 30, 10]
    np.testing.assert_array_equal(sub.by_grid()[0][1].tokens, ts.by_grid()[1][1].tokens[[1, 0]])
    assert_same(sub, T.load_tokens(sub.save(tmp_path / "sub.npz")))
    one = ts.subset([5, 0])  # one grid: a plain TokenSet, written as version 1
    assert isinstance(one, T.TokenSet) and one.grid == (3, 5) and one.meta["names"] == ["img5", "img0"]
    np.testing.assert_array_equal(one.tokens, ts.by_grid()[0][1].tokens[[2, 0]])
    with np.load(one.save(tmp_path / "one.npz")) as z:
        assert int(z["format_version"]) == 1 and z["tokens"].shape == (2, 16, 8)
    for name in ("tokens", "grid", "patch_tokens", "grid_tokens", "attention"):
        with pytest.raises(NtcError, match=r"several grids \(3x5, 4x4, 1x7\).*by_grid"):
            getattr(ts, name)
    with pytest.raises(NtcError, match="by_grid"):
        T.read_patch_tokens(ts.save(tmp_path / "m.npz"))
    with pytest.raises(NtcError, match="subset indices"):
        ts.subset([6])
    a, b = ts.by_grid()[:2]
    with pytest.raises(NtcError, match="cover 0..4 once"):
        T.MixedTokenSet([(a[0], a[1]), (b[0] + 1, b[1])])
    with pytest.raises(NtcError, match="share a grid"):
        T.MixedTokenSet([(np.array([0]), a[1].subset([0])), (np.array([1]), a[1].subset([1]))])


def test_bad_ragged_files_are_refused(tmp_path):
    good = synthetic(GRIDS[:2], attention=False)
    with np.load(good.save(tmp_path / "g.npz")) as z:
        arrays = {k: z[k] for k in z.files}
    for change, message in (({"offsets": np.array([0, 15, 30])}, "offsets must be"),
                            ({"grids": np.array([[3, 5], [0, 4]])}, "positive integers"),
                            ({"cls_tokens": arrays["cls_tokens"][:1]}, "do not match 2 grids"),
                            ({"format_version": np.array(3)}, "format version 3"),
                            ({"labels": np.array([1, 2, 3])}, "labels must be")):
        np.savez(tmp_path / "bad.npz", **{**arrays, **change})
        with pytest.raises(NtcError, match=message):
            T.load_tokens(tmp_path / "bad.npz")
    np.savez(tmp_path / "bad.npz", **{k: v for k, v in arrays.items() if k != "packed_tokens"})
    with pytest.raises(NtcError, match="missing key 'packed_tokens'"):
        T.load_tokens(tmp_path / "bad.npz")


def test_version_1_files_load_unchanged(tmp_path):
    rng = np.random.default_rng(1)
    tokens = rng.standard_normal((3, 1 + 4 * 6, 8)).astype(np.float32)
    base = {"tokens": tokens, "grid": np.array([4, 6]), "names": np.array(["a", "b", "c"]),
            "model_sha256": np.array("y"), "image_size": np.array(0), "source": np.array("files")}
    np.savez(tmp_path / "v1.npz", **base, format_version=np.array(1))
    np.savez(tmp_path / "v0.npz", **base)  # files from before format_version existed
    for name in ("v1.npz", "v0.npz"):
        ts = T.load_tokens(tmp_path / name)
        assert isinstance(ts, T.TokenSet) and ts.grid == (4, 6) and ts.meta["names"] == ["a", "b", "c"]
        np.testing.assert_array_equal(ts.tokens, tokens)
        (idx, group), = ts.by_grid()
        assert group is ts and idx.tolist() == [0, 1, 2]
    with np.load(T.TokenSet(tokens, (4, 6)).save(tmp_path / "w.npz")) as z:  # a TokenSet still writes version 1
        assert set(z.files) == set(base) | {"format_version"} and int(z["format_version"]) == 1


# ---- the CLI on real pictures -------------------------------------------------------------------------------------


def jpeg(tmp_path, name, img) -> str:
    path = tmp_path / name
    Image.fromarray(img).save(path, quality=95)
    return str(path)


@pytest.fixture(scope="module")
def astronaut():
    return to_rgb_uint8(skimage.data.astronaut())  # 512 x 512


def run_cli(capsys, *args):
    rc = main(["tokens", *args, "--no-progress"])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_refuses_bad_sizes_in_one_line(tmp_path, capsys, astronaut):
    img = jpeg(tmp_path, "a.jpg", astronaut)
    out = tmp_path / "t.npz"
    for args, message in ((["--size", "225"], "multiple of 14"), (["--size", "10x10"], "multiples of 14"),
                          (["--size", "wide"], "WxH"), (["--size", "224", "--max-pixels", "9000"], "native only"),
                          (["--size", "224", "--merge", "2"], "native only"),
                          (["--size", "native", "--min-pixels", "100"], "min_pixels"),
                          (["--size", "native", "--min-pixels", "5000", "--max-pixels", "4000"], "min_pixels")):
        rc, _, err = run_cli(capsys, img, *args, "--out", str(out))
        assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, (args, err)
    rc, _, err = run_cli(capsys, "--builtin", "skimage", "--size", "native", "--out", str(out))
    assert rc == 2 and "square sizes" in err and err.count("\n") == 1
    assert not out.exists()


def test_cli_native_16x9_and_wxh(tmp_path, capsys, astronaut):
    wide = jpeg(tmp_path, "wide.jpg", astronaut[112:400])  # 288 x 512: 16:9
    rc, out, _ = run_cli(capsys, wide, "--size", "native", "--out", str(tmp_path / "t.npz"))
    assert rc == 0 and "grid 21x37" in out
    ts = T.load_tokens(tmp_path / "t.npz")
    assert isinstance(ts, T.TokenSet) and ts.grid == (21, 37) and ts.grid[1] > ts.grid[0]
    assert ts.meta["provenance"]["resize"] == {"mode": "native", "rule": "Qwen2-VL smart_resize", "factor": 14,
                                               "min_pixels": 56 * 56, "max_pixels": 672 * 672}
    with np.load(tmp_path / "t.npz") as z:
        assert int(z["format_version"]) == 1 and z["tokens"].shape == (1, 1 + 21 * 37, vit.DIM)
    direct = T.extract_tokens([T.read_image(wide)], (294, 518), progress=False)
    np.testing.assert_allclose(ts.tokens, direct, atol=1e-6)
    rc, out, _ = run_cli(capsys, wide, "--size", "294x168", "--out", str(tmp_path / "f.npz"))
    assert rc == 0 and T.load_tokens(tmp_path / "f.npz").grid == (12, 21)
    # --merge 2: sides rounded to 28 px as Qwen's processors round them: even grids for the 2x2 mergers
    rc, out, _ = run_cli(capsys, wide, "--size", "native", "--merge", "2", "--out", str(tmp_path / "e.npz"))
    even = T.load_tokens(tmp_path / "e.npz")
    assert rc == 0 and even.grid == tuple(s // 14 for s in T.smart_resize(288, 512, 28)) == (20, 36)
    assert even.meta["provenance"]["resize"]["factor"] == 28


def test_cli_native_mixed_aspects_write_one_ragged_file(tmp_path, capsys, astronaut):
    wide = jpeg(tmp_path, "wide.jpg", astronaut[112:400])  # 288 x 512 -> 21 x 37
    tall = jpeg(tmp_path, "tall.jpg", astronaut[:, 112:400])  # 512 x 288 -> 37 x 21
    rc, out, _ = run_cli(capsys, wide, tall, wide, "--size", "native", "--out", str(tmp_path / "m.npz"))
    assert rc == 0 and "2 grids" in out and "ragged" in out
    ts = T.load_tokens(tmp_path / "m.npz")
    assert isinstance(ts, T.MixedTokenSet) and len(ts) == 3 and ts.meta["names"] == [wide, tall, wide]
    assert ts.grids.tolist() == [[21, 37], [37, 21], [21, 37]] and ts.labels is None
    (iw, w), (it, t) = ts.by_grid()
    assert iw.tolist() == [0, 2] and it.tolist() == [1] and w.grid_tokens.shape == (2, 21, 37, vit.DIM)
    np.testing.assert_allclose(t.tokens, T.extract_tokens([T.read_image(tall)], (518, 294), progress=False),
                               atol=1e-6)
    np.testing.assert_allclose(w.tokens[0], w.tokens[1], atol=1e-6)  # the same picture twice: the same tokens


# ---- what the position-table interpolation costs -------------------------------------------------------------------


def crop_16x9(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    ch = round(w * 9 / 16)
    if ch <= h:
        return img[(h - ch) // 2:(h - ch) // 2 + ch]
    cw = round(h * 16 / 9)
    return img[:, (w - cw) // 2:(w - cw) // 2 + cw]


def to_size(m: np.ndarray, hw) -> np.ndarray:
    return F.interpolate(torch.from_numpy(m)[None, None], size=hw, mode="bilinear", antialias=True)[0, 0].numpy()


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_saliency_on_native_grids_agrees_with_square():
    """The 16:9 crops of the pinned photographs at 224x224 (squashed) and at their native grid (the ViT interpolates
    its 37x37 position table to 21x37 or 26x46): the saliency head's maps, brought to the crop's pixels, correlate
    far above the correlation between different photographs. Measured: 0.95, 0.97, 0.96 (camera,
    immunohistochemistry, flower); gravel's maps are flat (std 0.02) and left out; across photographs at most 0.36."""
    crops = [crop_16x9(to_rgb_uint8(p.load(), p.key)) for p in pinned_photos("calib") + pinned_photos("val")]
    square, native = [], []
    for c in crops:
        hw = T.smart_resize(*c.shape[:2])
        tok_sq, tok_nat = T.extract_tokens([c], 224, progress=False), T.extract_tokens([c], hw, progress=False)
        square.append(to_size(vit.saliency(tok_sq[0], (16, 16)), (288, 512)))
        native.append(to_size(vit.saliency(tok_nat[0], (hw[0] // 14, hw[1] // 14)), (288, 512)))
        assert native[-1].shape == (288, 512) and hw[1] > hw[0]
    structured = [i for i, m in enumerate(square) if m.std() > 0.1]
    assert len(structured) >= 3, [m.std() for m in square]
    cross = max(pearson(square[i], native[j]) for i in structured for j in structured if i != j)
    same = [pearson(square[i], native[i]) for i in structured]
    assert min(same) > 0.85 and min(same) > cross + 0.3, (same, cross)
