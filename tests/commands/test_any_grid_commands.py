"""Token files of any grid through the commands: the issue's bad inputs (a 24x24 file for bcae_x16, 20x16 for
mlp2x_gelu) now validate; a grid a family cannot take (patch_merger at 7x5) is one line, exit 2, before any work; a
7x5 image round-trips compress -> decompress on its own grid; a file of several grids validates group by group
against per-image references. Tokens are the pinned photographs' real ViT tokens at 336 px (a 24x24 grid) and crops
of that grid."""

import json

import numpy as np
import pytest
import torch
from ntc_export.cli import main
from ntc_export.codec.payload import unpack, unpack_file
from ntc_export.data.tokens import MixedTokenSet, TokenSet, extract_tokens
from ntc_export.models import load
from ntc_export.util.paths import ZOO_DIR
from pinned_photos import pinned_crops


@pytest.fixture(scope="module")
def grid24():
    """Real ViT tokens [4, 1 + 24*24, 384] of four pinned val crops resized to 336 px."""
    return extract_tokens(pinned_crops("val", 4), size=336, progress=False)


def crop_file(tokens24: np.ndarray, grid, path, labels=None):
    """A token file of the top-left h x w patches of the 24x24 tokens (CLS row kept)."""
    h, w = grid
    patches = tokens24[:, 1:].reshape(len(tokens24), 24, 24, -1)[:, :h, :w].reshape(len(tokens24), h * w, -1)
    return TokenSet(np.concatenate([tokens24[:, :1], patches], 1), (h, w), labels).save(path)


def _validate(model: str, data, out) -> int:
    return main(["validate", str(ZOO_DIR / f"{model}.pt"), "--data", str(data), "--out", str(out)])


def _records(out) -> dict:
    return {(r["precision"], r["output"]): r for r in json.loads((out / "validation.json").read_text())}


def test_bcae_x16_validates_a_24x24_file(grid24, tmp_path):
    data = TokenSet(grid24, (24, 24)).save(tmp_path / "g24.npz")
    assert _validate("bcae_x16", data, tmp_path / "out") == 0
    rows = _records(tmp_path / "out")
    assert rows[("fp32", "tokens_out")]["rel_l2"] <= 1e-5 and rows[("fp16", "tokens_out")]["cosine"] >= 0.9995
    assert all(r["samples"] == 4 for r in rows.values())


def test_mlp2x_gelu_validates_a_20x16_file(grid24, tmp_path):
    data = crop_file(grid24, (20, 16), tmp_path / "g20x16.npz")
    assert _validate("mlp2x_gelu", data, tmp_path / "out") == 0
    rows = _records(tmp_path / "out")
    assert rows[("fp32", "tokens_out")]["rel_l2"] <= 1e-5 and rows[("fp16", "tokens_out")]["cosine"] >= 0.9995


def test_patch_merger_refuses_a_7x5_file_in_one_line(grid24, tmp_path, capsys):
    data = crop_file(grid24, (7, 5), tmp_path / "g7x5.npz")
    capsys.readouterr()
    assert _validate("patch_merger", data, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "patch_merger" in err[0] and "7x5" in err[0], err
    assert not (tmp_path / "out").exists()  # refused before the export


def test_main_job_profiles_admit_the_data_and_keep_a_mergers_sides_even(grid24, tmp_path, capsys):
    """The main job's engine profiles: data outside --grid is refused, odd bounds for a 2x2 merger too, both in one
    line before any export; the default widens to the data (a native 16:9 photo's 36x60 needs max width 64)."""
    data = TokenSet(grid24, (24, 24)).save(tmp_path / "g24.npz")
    run = ["--data", str(data), "--precision", "fp32", "--no-build", "-q"]
    for grid, needle in (("4x4:16x16:20x20", "lies outside --grid"), ("4x4:16x16:47x48", "has max 47x48")):
        capsys.readouterr()
        assert main([str(ZOO_DIR / "patch_merger.pt"), *run, "--grid", grid, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
        assert not (tmp_path / "o").exists()
    from ntc_export.backend.trt.profiles import DEFAULT_GRID, covering

    assert covering(DEFAULT_GRID, [(36, 60)]) == ((4, 4), (16, 16), (48, 64))


def test_bcae_x16_round_trips_a_7x5_file_on_its_grid(grid24, tmp_path):
    """The decoded 7x5 tokens are the top-left 7x5 of decoding the grid padded by edge repetition to whole 8x8
    blocks (numpy's edge padding, the model's own compress/decompress on 8x8)."""
    data = crop_file(grid24, (7, 5), tmp_path / "g7x5.npz")
    assert main(["compress", str(ZOO_DIR / "bcae_x16.pt"), "--data", str(data), "--out", str(tmp_path / "p.bin")]) == 0
    payloads = unpack_file((tmp_path / "p.bin").read_bytes())
    assert [unpack(p).grid for p in payloads] == [(7, 5)] * 4
    assert main(["decompress", str(ZOO_DIR / "bcae_x16.pt"), str(tmp_path / "p.bin"), "--out",
                 str(tmp_path / "d.npz")]) == 0
    with np.load(tmp_path / "d.npz") as z:
        assert tuple(z["grid"]) == (7, 5) and z["patch_tokens"].shape == (4, 35, 384)
        decoded = z["patch_tokens"]
    module = load(ZOO_DIR / "bcae_x16.pt")
    grid = grid24[:, 1:].reshape(4, 24, 24, -1)[:, :7, :5]
    padded = np.pad(grid, ((0, 0), (0, 1), (0, 3), (0, 0)), mode="edge")
    ref = module.decompress(module.compress(padded)).reshape(4, 8, 8, -1)[:, :7, :5].reshape(4, 35, -1)
    np.testing.assert_array_equal(decoded, ref)
    cos = (decoded * grid.reshape(4, 35, -1)).sum(-1) / np.linalg.norm(decoded, axis=-1) / np.linalg.norm(
        grid.reshape(4, 35, -1), axis=-1)
    assert cos.mean() > 0.8  # a real reconstruction of the image's own tokens, not of the padding


def test_a_file_of_several_grids_validates_against_per_image_references(grid24, tmp_path):
    """mlp2x_gelu on images interleaved from a 20x16 and a 12x9 grid, labelled with PyTorch's own prediction for
    each image run alone: the fp32 accuracy is 1 only if every image meets its own label (the groups' order is not
    the file's), and the fp16 record's cosine is the cosine over every output token of every image."""
    parts = [grid24[:, 1:].reshape(4, 24, 24, -1)[:, :20, :16], grid24[:, 1:].reshape(4, 24, 24, -1)[:, 5:17, 7:16]]
    groups = [(np.array([0, 2, 4, 6]), parts[0]), (np.array([1, 3, 5, 7]), parts[1])]
    module = load(ZOO_DIR / "mlp2x_gelu.pt").eval()
    with torch.no_grad():
        per_image = {int(i): module(torch.from_numpy(np.ascontiguousarray(g[k:k + 1]))) for idx, g in groups
                     for k, i in enumerate(idx)}
    labels = np.array([int(per_image[i][1].argmax()) for i in range(8)])
    in_group_order = np.concatenate([labels[idx] for idx, _ in groups])
    assert (in_group_order != labels).any()  # a mix-up of the two orders would show in the accuracy
    sets = [(idx, TokenSet(np.concatenate([grid24[:, :1], g.reshape(4, -1, 384)], 1), g.shape[1:3], labels[idx]))
            for idx, g in groups]
    MixedTokenSet(sets).save(tmp_path / "mixed.npz")
    assert _validate("mlp2x_gelu", tmp_path / "mixed.npz", tmp_path / "out") == 0
    rows = _records(tmp_path / "out")
    assert rows[("fp32", "logits")]["task_metric"] == 1.0 and rows[("fp32", "tokens_out")]["samples"] == 8
    fp16 = _fp16_outputs(tmp_path / "out" / "model.fp16.onnx", groups)
    num = sum(float((per_image[i][0].double().numpy() * fp16[i]).sum()) for i in range(8))
    norms = [np.sqrt(sum(float((x.astype(np.float64) ** 2).sum()) for x in xs)) for xs in
             ([per_image[i][0].numpy() for i in range(8)], [fp16[i] for i in range(8)])]
    assert rows[("fp16", "tokens_out")]["cosine"] == pytest.approx(num / norms[0] / norms[1], abs=1e-9)


def _fp16_outputs(path, groups) -> dict:
    """ONNX Runtime's fp16 tokens_out per image, each image run alone (fp16 feeds, as the graph takes them)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    dtype = np.float16 if sess.get_inputs()[0].type == "tensor(float16)" else np.float32
    return {int(i): sess.run(["tokens_out"], {"tokens": g[k:k + 1].astype(dtype)})[0].astype(np.float64)
            for idx, g in groups for k, i in enumerate(idx)}
