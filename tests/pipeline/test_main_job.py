"""The main job: records, manifest, stage cache hits and invalidation, CLI exit codes."""

import json

import numpy as np
import pytest
import torch
from ntc_export.cli import main
from ntc_export.data.tokens import TokenSet
from ntc_export.models import build, save


@pytest.fixture
def setup(tmp_path):
    torch.manual_seed(0)
    model = build("pixel_shuffle", {"input_dim": 48, "output_dim": 32, "num_classes": 4})
    save(model, tmp_path / "tiny.pt")
    rng = np.random.default_rng(0)
    data = TokenSet(rng.standard_normal((12, 1 + 64, 48)).astype(np.float32), (8, 8),
                    rng.integers(0, 4, 12), {"source": "test"})
    data.save(tmp_path / "data.npz")
    return tmp_path


def _run(tmp, *extra, build=False):
    args = [str(tmp / "tiny.pt"), "--data", str(tmp / "data.npz"), "--out", str(tmp / "out"), "--quiet", *extra]
    return main(args if build else [*args, "--no-build"])


def test_records_and_manifest(setup):
    assert _run(setup) == 0
    report = json.loads((setup / "out" / "report.json").read_text())
    keys = {"model", "precision", "target", "backend", "output", "max_abs", "rel_l2", "cosine", "snr_db",
            "task_metric"}
    assert {(r["precision"], r["output"]) for r in report["records"]} == {
        (p, o) for p in ("fp32", "fp16") for o in ("tokens_out", "logits")}
    for r in report["records"]:
        assert keys <= r.keys() and r["backend"] == "onnxruntime" and r["target"] == "cpu" and r["pass"]
        assert 0.0 <= r["task_metric"] <= 1.0
    fp32 = [r for r in report["records"] if r["precision"] == "fp32"]
    assert all(r["rel_l2"] <= 1e-5 for r in fp32)
    manifest = json.loads((setup / "out" / "manifest.json").read_text())
    assert manifest["stages_run"] == ["tiny/export/decomposed", "tiny/validate/decomposed",
                                      "tiny/measure/decomposed"]
    assert manifest["stages_skipped"] == []
    assert "torch" in manifest["versions"] and manifest["inputs"]["tiny"]
    assert "| tiny | fp16 |" in (setup / "out" / "report.md").read_text()
    html = (setup / "out" / "report" / "index.html").read_text()
    assert "tiny" in html and "http://" not in html and "https://" not in html
    full = json.loads((setup / "out" / "report" / "report.json").read_text())
    assert {(r["model"], r["precision"]) for r in full["latency"]} == {("tiny", "fp32"), ("tiny", "fp16")}


def test_rerun_skips_everything_then_invalidates(setup):
    assert _run(setup) == 0
    assert _run(setup) == 0
    manifest = json.loads((setup / "out" / "manifest.json").read_text())
    assert manifest["stages_run"] == [] and len(manifest["stages_skipped"]) == 3

    # new data: export is reused, validation reruns
    d = TokenSet(np.random.default_rng(1).standard_normal((12, 65, 48)).astype(np.float32), (8, 8))
    d.save(setup / "data.npz")
    assert _run(setup) == 0
    manifest = json.loads((setup / "out" / "manifest.json").read_text())
    assert manifest["stages_run"] == ["tiny/validate/decomposed", "tiny/measure/decomposed"]
    assert manifest["stages_skipped"] == ["tiny/export/decomposed"]

    # a damaged artifact is rebuilt, never trusted
    onnx_file = setup / "out" / "tiny" / "onnx" / "decomposed" / "model.fp16.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:-10])
    assert _run(setup) == 0
    manifest = json.loads((setup / "out" / "manifest.json").read_text())
    assert "tiny/export/decomposed" in manifest["stages_run"]

    # a different precision set changes the export key
    assert _run(setup, "--precision", "fp32") == 0
    report = json.loads((setup / "out" / "report.json").read_text())
    assert {r["precision"] for r in report["records"]} == {"fp32"}


def test_wrong_token_dim_is_a_clear_error(setup, capsys):
    TokenSet(np.zeros((4, 65, 40), np.float32), (8, 8)).save(setup / "data.npz")
    assert _run(setup) == 2
    err = capsys.readouterr().err
    assert "48-d tokens" in err and "40-d" in err


def test_missing_model_file(setup, capsys):
    assert main([str(setup / "nope.pt"), "--data", str(setup / "data.npz"), "--out", str(setup / "o")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


def test_engines_for_targets_and_refusals(setup):
    assert _run(setup, "--target", "rtx-ada", "--target", "jetson-orin", build=True) == 0
    report = json.loads((setup / "out" / "report.json").read_text())
    engine_rows = [r for r in report["records"] if r["backend"] != "onnxruntime"]
    assert {(r["target"], r["backend"]) for r in engine_rows} == {("rtx-ada", "tensorrt_rtx"),
                                                                  ("jetson-orin", "tensorrt")}
    for r in engine_rows:  # no GPU here: the record says so instead of carrying numbers
        if not r["executed"]:
            assert r["reason"] and r["cosine"] is None
    assert (setup / "out" / "engines" / "rtx-ada" / "tiny.fp16.engine").stat().st_size > 1000
    manifest = json.loads((setup / "out" / "engines" / "manifest.json").read_text())
    assert {e["kind"] for e in manifest["engines"]} == {"engine", "bundle"}
    # a rerun takes the engine from the cache
    assert _run(setup, "--target", "rtx-ada", build=True) == 0
    stages = json.loads((setup / "out" / "manifest.json").read_text())["stages_skipped"]
    assert "tiny/build/rtx-ada/fp16" in stages


def test_unsupported_pair_is_refused_before_work(setup, capsys):
    assert _run(setup, "--target", "rtx-ampere", "--precision", "fp8", build=True) == 2
    assert "fp8" in capsys.readouterr().err and not (setup / "out").exists()


def test_int8_fp8_calibration_stage(setup):
    rng = np.random.default_rng(7)
    calib = TokenSet(rng.standard_normal((32, 65, 48)).astype(np.float32), (8, 8))
    calib.save(setup / "calib.npz")
    args = ["--calib-data", str(setup / "calib.npz"), "--precision", "int8", "--precision", "fp8",
            "--calib-method", "minmax", "--target", "rtx-ada"]
    # Seeded weights and data, exact Q/DQ scoring: the verdict is fixed (worst: fp8 tokens_out cosine 0.99898 >= 0.998).
    assert _run(setup, *args, build=True) == 0
    report = json.loads((setup / "out" / "report.json").read_text())
    ort = {(r["precision"], r["output"]): r for r in report["records"] if r["backend"] == "onnxruntime"}
    assert {p for p, _ in ort} == {"fp32", "int8", "fp8"}  # fp32 comes along as the calibration reference
    assert all(0.998 <= r["cosine"] <= 1.0 and r["pass"] for r in ort.values())
    assert report["calibration_data"]["samples"] == 32
    manifest = json.loads((setup / "out" / "manifest.json").read_text())
    assert manifest["data_sources"]["calibration"] == "calib.npz"  # no machine path in the build directory
    graphs = report["calibrated_graphs"]
    assert {(c["precision"], c["target_cosine"]) for c in graphs} == {("int8", None), ("fp8", None)}
    assert all(c["quantized_layers"] > 0 and c["kept_high_precision"] == [] for c in graphs)
    engines = {(r["target"], r["precision"]) for r in report["records"] if r["backend"] == "tensorrt_rtx"}
    assert engines == {("rtx-ada", "int8"), ("rtx-ada", "fp8")}
    assert (setup / "out" / "tiny" / "onnx" / "decomposed" / "model.int8.onnx").exists()


def test_target_cosine_keeps_layers_and_the_report_lists_them(setup):
    rng = np.random.default_rng(8)
    TokenSet(rng.standard_normal((32, 65, 48)).astype(np.float32), (8, 8)).save(setup / "calib.npz")
    args = ["--calib-data", str(setup / "calib.npz"), "--precision", "int8", "--calib-method", "minmax",
            "--target-cosine", "1.0"]  # unreachable in int8: every layer it can keep is kept
    assert _run(setup, *args) == 0  # every quantizable layer kept: int8 matches fp32 (cosine 1 - 1e-14)
    report = json.loads((setup / "out" / "report.json").read_text())
    kept = [c for c in report["calibrated_graphs"] if c["kept_high_precision"]]
    assert kept and all(c["target_cosine"] == 1.0 for c in kept)
    first = kept[0]
    line = f"{first['model']} int8 ({first['lowering']}): {', '.join(first['kept_high_precision'])}"
    assert f"- kept in high precision: {line}" in (setup / "out" / "report" / "report.md").read_text()
    assert f"Kept in high precision: {line}" in (setup / "out" / "report" / "index.html").read_text()


def test_same_calibration_and_validation_data_is_refused(setup, capsys):
    assert _run(setup, "--calib-data", str(setup / "data.npz"), "--precision", "int8") == 2
    assert "disjoint" in capsys.readouterr().err


def test_relative_output_dir(setup, monkeypatch):
    monkeypatch.chdir(setup)
    args = ["tiny.pt", "--data", "data.npz", "--out", "rel/out", "--quiet", "--target", "jetson-orin"]
    assert main(args) == 0 and main(args) == 0
    manifest = json.loads((setup / "rel" / "out" / "manifest.json").read_text())
    assert manifest["stages_run"] == [] and "tiny/build/jetson-orin/fp16" in manifest["stages_skipped"]
    assert (setup / "rel" / "out" / "engines" / "jetson-orin" / "tiny.fp16.bundle" / "build_engine.py").is_file()


def test_extra_graphs_are_exported_validated_and_named(tmp_path):
    """A compressor's encoder graph (vq: tokens -> INT32 indices) goes through export and validation beside its
    decoder as `<model>.encoder`; integer outputs pass on index agreement with PyTorch, not on a cosine of indices."""
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1] / "vq"))
    from vq_inputs import low_rank_tokens, tiny_model

    save(tiny_model(), tmp_path / "vq.pt")
    tokens = low_rank_tokens(4, seed=1)
    TokenSet(np.concatenate([tokens[:, :1], tokens], 1), (16, 16), None, {"source": "test"}).save(tmp_path / "d.npz")
    assert main([str(tmp_path / "vq.pt"), "--data", str(tmp_path / "d.npz"), "--precision", "fp32", "--precision",
                 "fp16", "--out", str(tmp_path / "out"), "--quiet", "--no-build"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    rows = {(r["model"], r["precision"]): r for r in report["records"]}
    assert set(rows) == {(m, p) for m in ("vq", "vq.encoder") for p in ("fp32", "fp16")}
    assert rows[("vq.encoder", "fp32")]["index_agreement"] == 1.0
    assert rows[("vq.encoder", "fp32")]["threshold"] == "index_agreement >= 0.9999"
    assert rows[("vq.encoder", "fp16")]["index_agreement"] >= 0.99
    assert "index_agreement" not in rows[("vq", "fp16")]
    assert (tmp_path / "out" / "vq.encoder" / "onnx" / "decomposed" / "model.fp16.onnx").is_file()


def test_too_little_calibration_data_is_refused_before_any_work(setup, capsys):
    rng = np.random.default_rng(1)
    TokenSet(rng.standard_normal((12, 1 + 64, 48)).astype(np.float32), (8, 8), None,
             {"source": "test"}).save(setup / "calib.npz")
    assert _run(setup, "--precision", "int8", "--calib-data", str(setup / "calib.npz")) == 2
    err = capsys.readouterr().err
    assert "calibration data too small: 12 samples" in err and len(err.strip().splitlines()) == 1, err
    assert not (setup / "out").exists()


def test_tokens_on_several_grids_run_the_whole_job(setup, capsys):
    """Validation and calibration files mixing an 8x8 and a 6x10 grid (ragged files): every stage runs grid group by
    grid group, records count every image, and the task metric reads each image's own label (PyTorch image by
    image); an odd grid the pixel shuffle cannot take is one line, exit 2, before any work."""
    from ntc_export.data.tokens import MixedTokenSet
    from ntc_export.models import load

    rng = np.random.default_rng(3)

    def ragged(n: int, seed: int) -> MixedTokenSet:
        order = np.random.default_rng(seed).permutation(2 * n)
        sets = [TokenSet(rng.standard_normal((n, 1 + h * w, 48)).astype(np.float32), (h, w), rng.integers(0, 4, n))
                for h, w in ((8, 8), (6, 10))]
        return MixedTokenSet([(np.sort(order[:n]), sets[0]), (np.sort(order[n:]), sets[1])], {"source": "test"})

    val, calib = ragged(6, 0), ragged(10, 1)
    val.save(setup / "data.npz")
    calib.save(setup / "calib.npz")
    args = ["--calib-data", str(setup / "calib.npz"), "--precision", "fp32", "--precision", "int8",
            "--calib-method", "minmax"]
    assert _run(setup, *args) == 0
    report = json.loads((setup / "out" / "report.json").read_text())
    assert sorted(report["data"]["grid"]) == [[6, 10, 6], [8, 8, 6]] and report["calibration_data"]["samples"] == 20
    rows = {(r["precision"], r["output"]): r for r in report["records"]}
    assert all(r["samples"] == 12 and r["pass"] for r in rows.values())
    assert rows[("fp32", "tokens_out")]["rel_l2"] <= 1e-5 and rows[("int8", "tokens_out")]["cosine"] >= 0.99
    module = load(setup / "tiny.pt").eval()
    with torch.no_grad():
        predicted = np.empty(12, np.int64)
        for idx, ts in val.by_grid():
            predicted[idx] = [int(module(torch.from_numpy(ts.grid_tokens[k:k + 1]))[1].argmax()) for k in range(6)]
    assert rows[("fp32", "logits")]["task_metric"] == pytest.approx(float((predicted == val.labels).mean()))
    TokenSet(rng.standard_normal((4, 1 + 35, 48)).astype(np.float32), (7, 5)).save(setup / "odd.npz")
    capsys.readouterr()
    assert main([str(setup / "tiny.pt"), "--data", str(setup / "odd.npz"), "--out", str(setup / "odd"), "--quiet",
                 "--no-build"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "7x5" in err[0] and not (setup / "odd").exists(), err
