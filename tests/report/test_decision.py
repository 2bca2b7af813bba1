"""The decision table, the trade-off chart's points, 'not run' grouped by reason and portable paths, on a real
main-job run (int8/fp8 calibrated by default, TensorRT-RTX engines built ahead of time, a Jetson bundle)."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from ntc_export.cli import main
from ntc_export.report.decision import decision
from ntc_export.report.paths import portable, portable_command
from ntc_export.report.plots import threshold_snr_db
from report_inputs import tiny_projector_inputs

TARGETS = ("rtx-ampere", "rtx-ada", "jetson-orin")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The main job with its default precisions (--calib-data given: int8 and fp8 come along) on three targets."""
    tmp = tmp_path_factory.mktemp("decision")
    tiny_projector_inputs(tmp, (("data", 12), ("calib", 24)))
    args = [str(tmp / "tiny.pt"), "--data", str(tmp / "data.npz"), "--calib-data", str(tmp / "calib.npz"),
            "--out", str(tmp / "out"), "--quiet"] + [a for t in TARGETS for a in ("--target", t)]
    # Seeded weights and data, exact Q/DQ scoring: the verdict is fixed (worst: fp8 tokens_out cosine 0.99897 >= 0.998).
    assert main(args) == 0
    out = tmp / "out"
    return tmp, out, json.loads((out / "report" / "report.json").read_text())


def test_default_precisions_give_quantized_rows_and_engines(run):
    _, _, view = run
    ort = {r["precision"] for r in view["accuracy"] if r["backend"] == "onnxruntime" and r["executed"]}
    assert ort == {"fp32", "fp16", "int8", "fp8"}
    rows = {(r["target"], r["precision"]): r for r in view["decision"]["rows"]}
    assert set(rows) == {("rtx-ampere", "fp16"), ("rtx-ampere", "int8"), ("rtx-ada", "fp16"), ("rtx-ada", "int8"),
                         ("rtx-ada", "fp8"), ("jetson-orin", "fp16"), ("jetson-orin", "int8")}
    for (target, precision), r in rows.items():
        assert r["worst_cosine"] is not None and r["worst_snr_db"] is not None and r["meets_thresholds"] is not None
        if target.startswith("rtx"):  # real engines: size, build time and the build log's layer mix
            assert r["engine_bytes"] > 1000 and r["build_seconds"] > 0
            assert sum(r["layer_shares"].values()) == pytest.approx(1.0)
        assert r["latency_ms"] is None and r["not_run"].startswith("not executed")  # no GPU: no number
    int8_mix = rows[("rtx-ada", "int8")]["layer_shares"]
    assert "int8" in int8_mix  # the engine really runs quantized layers (from the TensorRT-RTX build log)
    trade = view["tradeoff"]
    assert trade["size_target"] == "rtx-ada"
    assert {p["precision"] for p in trade["size"]} == {"fp16", "int8", "fp8"}
    assert {p["precision"] for p in trade["latency"]} == {"fp32", "fp16", "int8", "fp8"}  # ORT CPU, measured here
    assert view["plots"]["tradeoff"] == "tradeoff.png" and (run[1] / "report" / "tradeoff.png").is_file()


def _independent_recommendation(view: dict, target: str, model: str):
    """The rule, recomputed from the accuracy and engine rows the decision table summarises."""
    candidates = []
    for e in view["engines"]:
        if (e["target"], e["model"]) != (target, model) or e["engine_bytes"] is None:
            continue
        rows = [r for r in view["accuracy"] if r["backend"] == "onnxruntime" and r["executed"]
                and r["model"] == model and r["precision"] == e["precision"] and r["artifact"] == e["onnx"]]
        assert rows, f"no validation of the graph {e['onnx']} that the {target} engine was built from"
        if all(r["verdict"] == "pass" for r in rows):
            candidates.append((e["engine_bytes"], e["precision"]))
    return min(candidates)[1] if candidates else None


def test_recommendation_follows_the_stated_rule(run):
    _, _, view = run
    recs = {(r["target"], r["model"]): r for r in view["decision"]["recommendations"]}
    assert set(recs) == {(t, "tiny") for t in TARGETS}
    for target in ("rtx-ampere", "rtx-ada"):
        assert recs[(target, "tiny")]["precision"] == _independent_recommendation(view, target, "tiny")
        marked = [r["precision"] for r in view["decision"]["rows"] if r["target"] == target and r["recommended"]]
        assert marked == ([recs[(target, "tiny")]["precision"]] if recs[(target, "tiny")]["precision"] else [])
    assert recs[("jetson-orin", "tiny")]["precision"] is None and "bundle" in recs[("jetson-orin", "tiny")]["why"]
    thresholds = view["decision"]["thresholds"]
    assert thresholds["int8"] == "cosine >= 0.999" and thresholds["fp32"] == "rel_l2 <= 1e-05"
    assert "smallest engine" in view["decision"]["rule"]


def _acc(precision, cosine, snr, verdict="pass", output="tokens_out", artifact=None):
    return {"model": "m", "precision": precision, "backend": "onnxruntime", "target": "cpu", "output": output,
            "executed": True, "cosine": cosine, "snr_db": snr, "task_metric": None, "verdict": verdict,
            "threshold": "cosine >= 0.999", "artifact": artifact or f"m/onnx/decomposed/model.{precision}.onnx"}


def _eng(precision, nbytes, target="rtx-ada"):
    return {"model": "m", "target": target, "precision": precision, "kind": "engine", "engine_bytes": nbytes,
            "onnx": f"m/onnx/decomposed/model.{precision}.onnx", "layer_precisions": {precision: 3, "fp32": 1},
            "build_seconds": 1.0, "executed": False, "reason": "not executed: no CUDA device", "latency": None}


def test_rule_on_known_rows():
    acc = [_acc("fp16", 0.9999, 40.0), _acc("int8", 0.990, 17.0, "FAIL"), _acc("fp8", 0.9991, 28.0),
           _acc("fp8", 0.9992, 29.0, output="logits")]
    d = decision(acc, [_eng("fp16", 4000), _eng("int8", 1000), _eng("fp8", 1500)])
    rec = d["recommendations"][0]
    assert rec["precision"] == "fp8" and "below threshold: int8" in rec["why"]  # smaller, misses its threshold
    assert rec["why"].endswith("next: fp16 +166.7% bytes, 40.0 dB vs 28.0 dB")
    fp8 = next(r for r in d["rows"] if r["precision"] == "fp8")
    assert fp8["worst_snr_db"] == 28.0 and fp8["worst_cosine"] == 0.9991 and fp8["outputs"] == 2
    assert fp8["layer_shares"] == {"fp8": 0.75, "fp32": 0.25}
    # a tie in size goes to the higher SNR; nothing passing gives no recommendation
    tie = decision([_acc("fp16", 0.9999, 40.0), _acc("int8", 0.9995, 30.0)], [_eng("fp16", 1000), _eng("int8", 1000)])
    assert tie["recommendations"][0]["precision"] == "fp16"
    none = decision([_acc("int8", 0.9, 10.0, "FAIL")], [_eng("int8", 1000)])
    assert none["recommendations"][0]["precision"] is None
    # an engine is judged by the graph it was built from, not by another lowering's rows
    other = _acc("int8", 0.5, 3.0, "FAIL", artifact="m/onnx/plugin/model.int8.onnx")
    assert decision([_acc("int8", 0.9995, 30.0), other], [_eng("int8", 1000)])["recommendations"][0][
        "precision"] == "int8"


def test_engines_close_in_size_are_decided_by_latency_or_snr():
    acc = [_acc("fp16", 0.9999, 40.0), _acc("int8", 0.9995, 30.0), _acc("fp8", 0.9993, 27.0)]
    close = [_eng("fp16", 1300), _eng("int8", 1040), _eng("fp8", 1000)]  # int8 within 10% of fp8, fp16 is not
    rec = decision(acc, close)["recommendations"][0]
    assert rec["precision"] == "int8" and "fp8, int8 within 10% in engine size" in rec["why"]
    assert "highest worst-output SNR" in rec["why"]
    timed = [{**e, "latency": {"b1": {"p50_ms": ms}}, "executed": True} for e, ms in zip(close, (1.0, 0.9, 0.7))]
    rec = decision(acc, timed)["recommendations"][0]
    assert rec["precision"] == "fp8" and "lowest measured latency" in rec["why"]


def test_payload_decision_names_the_routes_it_beats_or_loses_to():
    from ntc_export.report.payload import payload_decision

    def point(model, family, nbytes, cosine, bound):
        return {"model": model, "family": family, "bytes_per_image": nbytes, "cosine": cosine,
                "decode_cost": {"bound_ms": {"rtx-ada": {"bound_ms": bound}}}}

    points = [point("vq_x16", "vq", 12000, 0.993, 0.004), point("vq_x64", "vq", 3000, 0.970, 0.003),
              point("hp_x14", "hyperprior", 9000, 0.991, 0.002), point("avif q50", "pixels", 3000, 0.9926, 0.09),
              point("jpeg q95", "pixels", 18000, 0.999, 0.09), point("int8", "quant", 99000, 0.99997, 0.0005),
              point("pca@16x", "pca", 12000, 0.966, 0.001)]
    t, = payload_decision(points, ["rtx-ada"], {"min_cosine": 0.99})["targets"]
    assert t["choice"]["model"] == "hp_x14"  # the smallest payload reaching 0.99, not the one with the best cosine
    refs = {r["kind"]: r for r in t["references"]}
    assert set(refs) == {"picture + ViT", "token quantization"}  # the PCA line never reaches 0.99 here
    assert refs["picture + ViT"]["model"] == "avif q50" and refs["picture + ViT"]["verdict"].startswith("trades")
    assert refs["token quantization"]["verdict"].startswith("trades (11x bytes, 0.25x decode)")
    # a decode budget below hp_x14's bound leaves no codec: said in one line, references still listed
    t, = payload_decision(points, ["rtx-ada"], {"min_cosine": 0.99, "decode_budget_ms": 0.001})["targets"]
    assert t["choice"] is None and "within 0.001 ms" in t["why"] and len(t["references"]) == 2
    t, = payload_decision(points, ["rtx-ada"], {"min_cosine": 0.95})["targets"]
    verdicts = {r["kind"]: r["verdict"] for r in t["references"]}
    assert t["choice"]["model"] == "vq_x64" and verdicts["PCA line"] == "trades (4x bytes, 0.33x decode)"
    assert verdicts["picture + ViT"] == "beats it (1x bytes, 30x decode)"  # as few bytes, a far cheaper decode


def test_threshold_lines_in_snr():
    assert threshold_snr_db("rel_l2 <= 1e-05") == pytest.approx(100.0)
    assert threshold_snr_db("cosine >= 0.999") == pytest.approx(-10 * np.log10(1 - 0.999 ** 2))
    assert threshold_snr_db("max_abs <= 0.1") is None


def test_not_run_is_grouped_by_reason(run):
    _, _, view = run
    groups = {g["reason"]: g for g in view["not_run"]}
    assert all(g["count"] == len(g["items"]) for g in groups.values())
    engines_not_run = [e for e in view["engines"] if e["kind"] == "engine" and not e["executed"]]
    rtx = [g for g in view["not_run"] if any("tensorrt_rtx" in i for i in g["items"])]
    assert sum(g["count"] for g in rtx) == len(engines_not_run) == 5
    bundle = next(g for r, g in groups.items() if "build on the device" in r)
    assert bundle["count"] == 2 and "<model>.<precision>" in bundle["reason"]  # one reason for both bundles
    assert any(r.startswith("not built: fp8") for r in groups)  # rtx-ampere and jetson-orin refuse fp8
    html = (run[1] / "report" / "index.html").read_text()
    md = (run[1] / "report" / "report.md").read_text()
    for g in view["not_run"]:
        assert f"**{g['count']}** × {g['reason']}" in md
    assert html.count("<details") >= len(view["not_run"])


def test_no_absolute_path_of_the_build_machine(run):
    tmp, out, _ = run
    roots = {str(tmp), os.path.realpath(tmp), os.getcwd(), str(Path.home()), sys.prefix,
             os.environ["NTC_EXPORT_CACHE"], str(Path(__file__).resolve().parents[2])}
    files = [out / "report" / n for n in ("report.json", "report.md", "index.html")] + [
        out / n for n in ("report.md", "report.json", "manifest.json")]
    for f in files:
        text = f.read_text()
        for root in roots:
            assert root.rstrip("/") + "/" not in text, f"{f.name} names {root}"
        assert f"--out {out}" not in text
    view = json.loads(files[0].read_text())
    assert view["build_dir"] == "out"
    assert view["reproducibility"]["models"]["tiny"]["path"] == "tiny.pt"  # outside the build dir: its name
    arts = {a["path"] for a in view["reproducibility"]["artifacts"]}
    assert "tiny/onnx/decomposed/model.int8.onnx" in arts


def test_portable_paths(tmp_path):
    out = tmp_path / "out"
    assert portable(out / "a" / "b.onnx", out) == "a/b.onnx" and portable(out, out) == "."
    assert portable("/elsewhere/model.pt", out) == "model.pt" and portable("rel/x.onnx", out) == "rel/x.onnx"
    cmd = f"ntc-export /data/m.pt --data=/data/t.npz --out {out} --precision int8"
    assert portable_command(cmd, out) == "ntc-export m.pt --data=t.npz --out . --precision int8"
