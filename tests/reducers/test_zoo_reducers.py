"""The reducers' zoo checkpoints through the main job: ToMe and VisionZip fed the ViT's keys / CLS attention from token
sets, on the grid, their fp16 graphs fp16 at the interface and fp32 inside, ToMe's integer cosine metric bit-identical
between ONNX Runtime and PyTorch on real keys (16x16 and a non-square grid, one graph), their int8 graphs int8 at the
token interface (fp8 reported as not made), and ovis_vet (trained, float16 weights) calibrated like the projectors."""

import json

import numpy as np
import onnx
import pytest
import torch
from ntc_export.backend.onnx.export import export_model
from ntc_export.backend.onnx.inspect import onnx_precision
from ntc_export.backend.onnxrt.runner import OrtRunner
from ntc_export.cli import main
from ntc_export.data.tokens import TokenSet
from ntc_export.evaluate.validate import golden_outputs, model_feeds
from ntc_export.models import load
from ntc_export.models.reducers import cosine_scores
from ntc_export.util.errors import NtcError
from ntc_export.util.paths import ZOO_DIR
from pinned_photos import pinned_tokens
from reducer_grids import ODD_GRID

REDUCERS = ["tome_64", "visionzip_64", "visionzip_16"]
SAMPLES = 16  # the calibrator's minimum; enough crops for near-tie keys to occur


def _photo_set(split: str) -> TokenSet:
    """SAMPLES crops of the split's pinned photographs through the ViT, with its CLS attention and keys (shared and
    cached: never modified here)."""
    return pinned_tokens(split, SAMPLES, attention=True)


@pytest.fixture(scope="module")
def photos():
    """(held-out, calibration) token sets of disjoint photographs with the ViT's CLS attention and keys."""
    return _photo_set("val"), _photo_set("calib")


def test_zoo_checkpoints():
    meta = json.loads((ZOO_DIR / "reducers.json").read_text())
    assert set(meta) == {*REDUCERS, "ovis_vet_512"}
    assert load(ZOO_DIR / "tome_64.pt").out_tokens == 64 and load(ZOO_DIR / "visionzip_16.pt").out_tokens == 16
    stored = torch.load(ZOO_DIR / "ovis_vet_512.pt", weights_only=True)["state_dict"]
    assert {t.dtype for t in stored.values()} == {torch.float16}
    assert (ZOO_DIR / "ovis_vet_512.pt").stat().st_size <= 2.5 * 2**20 and meta["ovis_vet_512"]["val_accuracy"] > 0.5
    assert sum(p.stat().st_size for p in ZOO_DIR.glob("*.pt")) <= 40 * 10**6


def test_integer_cosine_against_numpy():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 5, 384, generator=g) * 3, torch.randn(2, 7, 384, generator=g)
    qa = np.round(a.numpy().astype(np.float64) * 127 / np.abs(a.numpy()).max(-1, keepdims=True))
    qb = np.round(b.numpy().astype(np.float64) * 127 / np.abs(b.numpy()).max(-1, keepdims=True))
    dot = qa @ qb.transpose(0, 2, 1)
    ref = dot / np.sqrt((qa * qa).sum(-1)[:, :, None] * (qb * qb).sum(-1)[:, None, :])
    got = cosine_scores(a, b, 127).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=0)
    float_cos = cosine_scores(a, b).numpy()
    assert 0 < np.abs(got - float_cos).max() < 2e-2  # the metric's rounding, bounded


def test_tome_integer_metric_is_bit_identical_in_ort(photos, odd_grid_photos, tmp_path):
    module = load(ZOO_DIR / "tome_64.pt").eval()
    paths = export_model(module, tmp_path, ("fp32",))
    runner = OrtRunner(paths["fp32"])
    for tokens in (photos[0], _odd_set(odd_grid_photos)):
        feeds = model_feeds(module, tokens)
        assert feeds["keys"].shape[1:3] == feeds["tokens"].shape[1:3] == tokens.grid  # the keys on the grid too
        golden = golden_outputs(module, feeds)
        got = runner.run(feeds)
        assert got["tokens_out"].shape[1] == tokens.grid[0] * tokens.grid[1] - 192  # r=48 in 4 steps
        for name in ("tokens_out", "sizes"):
            np.testing.assert_array_equal(got[name], golden[name])


def _odd_set(odd_grid_photos) -> TokenSet:
    """A token set of the pinned crops on the non-square grid, with the ViT's CLS attention and keys."""
    tokens, attention, keys = odd_grid_photos
    return TokenSet(tokens, ODD_GRID, None, {"source": "pinned photos:val 13x21"}, attention, keys)


def test_visionzip_takes_a_non_square_grid_through_its_graph(odd_grid_photos, tmp_path):
    module = load(ZOO_DIR / "visionzip_16.pt").eval()
    feeds = model_feeds(module, _odd_set(odd_grid_photos))
    assert feeds["attention"].shape == (4, 6, *ODD_GRID) and feeds["keys"].shape == (4, *ODD_GRID, 384)
    golden = golden_outputs(module, feeds)
    got = OrtRunner(export_model(module, tmp_path, ("fp32",))["fp32"]).run(feeds)
    np.testing.assert_array_equal(got["dominant_indices"], golden["dominant_indices"])
    top = np.sort(np.argsort(-odd_grid_photos[1].sum(1), axis=1, kind="stable")[:, :13], axis=1)
    np.testing.assert_array_equal(golden["dominant_indices"], top)  # the 13 most attended patches, row-major
    assert np.linalg.norm(got["tokens_out"] - golden["tokens_out"]) / np.linalg.norm(golden["tokens_out"]) <= 1e-5
    with pytest.raises(NtcError, match=r"^visionzip needs at least 16 patch tokens .* got a 3x5 grid \(15 tokens\)$"):
        model_feeds(module, TokenSet(odd_grid_photos[0][:, :16], (3, 5), None, {}, odd_grid_photos[1][..., :15],
                                     odd_grid_photos[2][:, :16]))


@pytest.mark.parametrize("name", ["tome_64", "visionzip_16"])
def test_fp16_graph_is_fp16_at_the_interface_only(name, photos, tmp_path):
    module = load(ZOO_DIR / f"{name}.pt").eval()
    fp16 = export_model(module, tmp_path, ("fp32", "fp16"))["fp16"]
    model = onnx.load(str(fp16))
    f16 = onnx.TensorProto.FLOAT16
    assert onnx_precision(model) == "fp16"
    assert all(v.type.tensor_type.elem_type == f16 for v in [*model.graph.input, *model.graph.output]
               if v.type.tensor_type.elem_type in (f16, onnx.TensorProto.FLOAT))
    io = {v.name for v in [*model.graph.input, *model.graph.output]}
    inner = [v.name for v in model.graph.value_info if v.type.tensor_type.elem_type == f16 and v.name not in io]
    assert inner == []  # no fp16 arithmetic inside
    feeds = model_feeds(module, photos[0])
    runner = OrtRunner(fp16)
    seen = runner.seen_inputs(feeds)
    np.testing.assert_array_equal(seen["tokens"], feeds["tokens"].astype(np.float16).astype(np.float32))
    reference = golden_outputs(module, seen)
    got = runner.run(feeds)
    np.testing.assert_allclose(got["tokens_out"].astype(np.float32), reference["tokens_out"], rtol=2e-3, atol=2e-3)


def _write(photos, tmp_path, attention=True):
    val, calib = photos
    if not attention:  # a new set without them: the cached one is shared
        val = TokenSet(val.tokens, val.grid, val.labels, dict(val.meta))
    val.save(tmp_path / "val.npz")
    calib.save(tmp_path / "calib.npz")


def test_main_job_feeds_attention_and_keys(photos, tmp_path):
    _write(photos, tmp_path)
    args = ["run", str(ZOO_DIR / "tome_64.pt"), str(ZOO_DIR / "visionzip_16.pt"), "--data", str(tmp_path / "val.npz"),
            "--calib-data", str(tmp_path / "calib.npz"), "--precision", "fp32", "--precision", "fp16",
            "--precision", "int8", "--no-build", "--quiet", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["pass"] and {r["precision"] for r in report["records"]} == {"fp32", "fp16", "int8"}
    for r in report["records"]:
        if r["precision"] == "fp16":
            assert r["golden_inputs"] == "fp16-rounded" and r["cosine"] >= 0.9995
        elif r["precision"] == "int8":  # int8 tokens in and out: the reference is fed the dequantized tokens
            assert r["golden_inputs"] == "int8-rounded" and r["cosine"] >= 0.999
            assert r["output"] != "tokens_out" or 0.999 <= r["cosine"] < 0.99999  # the tokens' own int8 rounding
        elif r["output"] == "tokens_out":
            assert r["rel_l2"] <= 1e-5
    assert not [r for r in report["refused"] if r["precision"] == "int8"]
    interfaces = {c["model"]: c for c in report["calibrated_graphs"]}
    assert set(interfaces) == {"tome_64", "visionzip_16"}
    for c in interfaces.values():
        assert set(c["int8_interface"]) == {"tokens", "tokens_out"} and c["quantized_layers"] == 0
        assert c["int8_interface"]["tokens"]["scale"] == pytest.approx(c["int8_interface"]["tokens"]["amax"] / 127)
    assert "tokens_out (scale" in (tmp_path / "out" / "report.md").read_text()


def test_fp8_of_a_reducer_is_refused_with_the_reason(photos, tmp_path):
    _write(photos, tmp_path)
    args = ["run", str(ZOO_DIR / "tome_64.pt"), "--data", str(tmp_path / "val.npz"), "--calib-data",
            str(tmp_path / "calib.npz"), "--precision", "fp8", "--no-build", "--quiet", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    (refused,) = [r for r in report["refused"] if r["precision"] == "fp8"]
    assert "int8 tokens at the interface" in refused["reason"] and report["calibrated_graphs"] == []


def test_token_file_without_attention_is_refused_before_work(photos, tmp_path, capsys):
    _write(photos, tmp_path, attention=False)
    assert photos[0].attention is not None  # the shared set keeps its attention
    args = ["run", str(ZOO_DIR / "visionzip_64.pt"), "--data", str(tmp_path / "val.npz"), "--precision", "fp32",
            "--no-build", "--quiet", "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "ntc-export tokens --attention" in err and "attention" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    with pytest.raises(NtcError, match="keys"):
        model_feeds(load(ZOO_DIR / "tome_64.pt"), photos[0].patch_tokens)  # a bare array has no keys


def test_engines_build_ahead_of_time(photos, tmp_path):
    """fp16 and int8 engines of the reducers' shipped graphs (fp16 / int8 tokens at the interface) and int8/fp8 of
    ovis_vet (calibrated on real tokens): one RTX target, the models' own profiles at batch 1..2."""
    pytest.importorskip("tensorrt_rtx_bindings")
    from ntc_export.backend.trt.build import build_engine
    from ntc_export.calibration import calibrate
    from ntc_export.calibration.interface import calibrate_interface

    profile = ((1, 1, 2), (16, 16, 16))
    for name in ["tome_64", "visionzip_16", "ovis_vet_512"]:
        module = load(ZOO_DIR / f"{name}.pt").eval()
        paths = export_model(module, tmp_path / name, ("fp32", "fp16"))
        if name != "ovis_vet_512":
            calibrate_interface(paths["fp32"], model_feeds(module, photos[1]), module.int8_streams, tmp_path / name)
            paths["int8"] = tmp_path / name / "model.int8.onnx"
        else:
            for precision in ("int8", "fp8"):
                result = calibrate(paths["fp32"], model_feeds(module, photos[1]), precision, "minmax",
                                   tmp_path / name, log=lambda text: None)
                assert len(result.quantized_layers) == 3
                paths[precision] = result.model_path
        for precision in [p for p in ("fp16", "int8", "fp8") if p in paths]:
            entry = build_engine(paths[precision], "rtx-ada", precision, tmp_path / "out",
                                 profiles=module.input_profiles(*profile), name=name)
            assert entry["precision"] == precision
            if precision == "int8" and name != "ovis_vet_512":  # int8 token bindings, the scales in the manifest
                types = {t["name"]: t["dtype"] for t in [*entry["inputs"], *entry["outputs"]]}
                assert types["tokens"] == types["tokens_out"] == "int8" and "int8" not in {types.get("keys"),
                                                                                             types.get("attention")}
                assert set(entry["int8_interface"]) == {"tokens", "tokens_out"}
            assert (tmp_path / "out" / "engines" / entry["engine"]).stat().st_size > 10_000


def test_calibrate_command_writes_the_int8_interface(photos, tmp_path, capsys):
    _write(photos, tmp_path)
    base = ["calibrate", str(ZOO_DIR / "visionzip_16.pt"), "--data", str(tmp_path / "calib.npz"), "--holdout",
            str(tmp_path / "val.npz")]
    assert main([*base, "--precision", "fp8", "--out", str(tmp_path / "fp8")]) == 2
    err = capsys.readouterr().err.strip()
    assert "int8 tokens at the interface" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "fp8" / "model.fp8.onnx").exists()
    assert main([*base, "--out", str(tmp_path / "int8")]) == 0
    out = capsys.readouterr().out
    cosine = float(out.split("tokens_out: cosine ")[1].split()[0])
    assert 0.999 <= cosine < 1.0 and "tokens scale" in out and "(held-out feeds)" in out
    runner = OrtRunner(tmp_path / "int8" / "model.int8.onnx")
    assert set(runner.int8_scales) == {"tokens", "tokens_out"} and runner.input_types["tokens"] == "tensor(int8)"
