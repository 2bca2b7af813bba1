"""Validation report: per-layer drift (fp32, fp16, Q/DQ, a doctored graph), latency, flags, HTML/MD/JSON, CLI."""

import hashlib
import json
import re
import shutil

import jsonschema
import numpy as np
import onnx
import pytest
from ntc_export.cli import main
from ntc_export.evaluate import (
    layer_drift,
    load_polygraphy_results,
    measure_build,
    measure_latency,
    save_polygraphy_results,
)
from ntc_export.evaluate.drift import scope_outputs, torch_module_outputs
from ntc_export.models import build, load
from ntc_export.report import no_faster_than_fp16, write_report
from ntc_export.report.collect import pareto_points
from ntc_export.report.html import SECTIONS
from ntc_export.report.schema import SCHEMA_PATH
from ntc_export.util.errors import NtcError
from onnx import numpy_helper
from report_inputs import tiny_projector_inputs

SECTION_IDS = [i for i, _ in SECTIONS]
FAKE_ENGINE = b"\x00not a real engine\x00" * 64


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    """A tiny main-job run: one pixel-shuffle projector, fp32 + fp16 ONNX, validated on 12 random token grids."""
    tmp = tmp_path_factory.mktemp("report")
    tiny_projector_inputs(tmp)
    assert main([str(tmp / "tiny.pt"), "--data", str(tmp / "data.npz"), "--out", str(tmp / "out"), "--quiet"]) == 0
    return tmp


@pytest.fixture(scope="module")
def feeds(build_dir):
    from ntc_export.data.tokens import load_tokens

    return {"tokens": load_tokens(build_dir / "data.npz").grid_tokens}  # graphs take [B, h, w, D]


def _onnx(build_dir, precision):
    """The ONNX file the main job validated for `precision`."""
    from ntc_export.evaluate.measure import onnx_artifacts

    out = build_dir / "out"
    return onnx_artifacts(out, json.loads((out / "report.json").read_text()))["tiny"][precision]


def _engine_entries(out):
    """A deploy bundle (never runs here) and an engine for an SM no device has: both must read 'not executed'."""
    engine_bytes = FAKE_ENGINE
    (out / "engines" / "rtx-sm1").mkdir(parents=True, exist_ok=True)
    (out / "engines" / "rtx-sm1" / "tiny.fp16.engine").write_bytes(engine_bytes)
    from ntc_export.backend.trt import env as trt_env

    version = trt_env.version_info("tensorrt_rtx")["version"]
    return [
        {"kind": "engine", "model": "tiny", "target": "rtx-sm1", "sm": 1, "backend": "tensorrt_rtx",
         "backend_version": version, "precision": "fp16", "engine": "rtx-sm1/tiny.fp16.engine",
         "engine_bytes": len(engine_bytes), "sha256": hashlib.sha256(engine_bytes).hexdigest(), "build_seconds": 1.5,
         "layer_summary": {"layers": 7, "fused": 2, "by_precision": {"fp16": 5, "fp32": 2}},
         "plugins": [{"op": "WindowAttention", "version": "1", "nodes": 2, "provider": "python_creators"}]},
        {"kind": "bundle", "model": "tiny", "target": "jetson-orin", "sm": 87, "backend": "tensorrt",
         "backend_version": ">=10.3,<11", "precision": "fp16", "engine": None, "executed": False,
         "reason": "TensorRT >=10.3,<11 is not installable here: build on the device", "plugins": []},
    ]


@pytest.fixture(scope="module")
def written(build_dir, feeds):
    out = build_dir / "out"
    report = json.loads((out / "report.json").read_text())
    report["engines"] = report.get("engines", []) + _engine_entries(out)
    report = measure_build(out, report, feeds_by_model={"tiny": feeds}, batches=(1, 8))
    return report, write_report(out, report)


# ---- per-layer drift -----------------------------------------------------------------------------------------------


def test_drift_maps_every_layer_and_fp32_matches(build_dir, feeds):
    rows = layer_drift(load(build_dir / "tiny.pt"), _onnx(build_dir, "fp32"), feeds, threshold=0.99999)
    assert [r["layer"] for r in rows] == ["mlp1.0", "mlp1.1", "mlp1.2", "mlp1.3", "head"]
    assert rows[3]["onnx_tensor"] == "tokens_out" and rows[4]["onnx_tensor"] == "logits"
    assert all(r["cosine"] > 1 - 1e-9 and r["rel_l2"] < 1e-5 for r in rows)
    assert not any(r["first_below"] or r["below"] for r in rows)


def test_drift_fp16_compares_what_consumers_see(build_dir, feeds):
    path = _onnx(build_dir, "fp16")
    rows = layer_drift(load(build_dir / "tiny.pt"), path, feeds, threshold=0.9995)
    producers = {o: n.op_type for n in onnx.load(str(path)).graph.node for o in n.output}
    ln = rows[0]
    assert ln["layer"] == "mlp1.0" and producers[ln["onnx_tensor"]] == "Cast"  # the fp16 cast after the fp32 LN
    for r in rows:
        assert 0.9995 < r["cosine"] < 1 - 1e-12 and 1e-5 < r["rel_l2"] < 1e-2  # fp16 rounding, not exact
    assert not any(r["first_below"] for r in rows)


def test_drift_flags_the_first_doctored_layer(build_dir, feeds, tmp_path):
    model = onnx.load(str(_onnx(build_dir, "fp32")))
    node = next(n for n in model.graph.node if n.name == "/mlp1/mlp1.3/MatMul")
    init = next(i for i in model.graph.initializer if i.name == node.input[1])
    w = numpy_helper.to_array(init).copy()
    w += np.random.default_rng(3).standard_normal(w.shape).astype(np.float32) * np.abs(w).mean() * 1.5
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(model, str(tmp_path / "doctored.onnx"))

    module = load(build_dir / "tiny.pt")
    rows = {r["layer"]: r for r in layer_drift(module, tmp_path / "doctored.onnx", feeds, threshold=0.999)}
    assert [k for k, r in rows.items() if r["first_below"]] == ["mlp1.3"]
    assert not rows["mlp1.2"]["below"] and rows["mlp1.3"]["below"]
    # independent reference: PyTorch's GELU output through the doctored weights, against PyTorch's own Linear
    outs = {name: out for name, _, out in torch_module_outputs(module, {"tokens": feeds["tokens"][:4]})}
    bias = module.mlp1[3].bias.detach().numpy()
    ref, got = outs["mlp1.3"].astype(np.float64).ravel(), (outs["mlp1.2"] @ w + bias).astype(np.float64).ravel()
    cosine = ref @ got / np.linalg.norm(ref) / np.linalg.norm(got)
    assert rows["mlp1.3"]["cosine"] == pytest.approx(cosine, abs=1e-6)


def test_drift_qdq_graph_skips_quantize_nodes(build_dir, feeds, tmp_path):
    from ntc_export.calibration.qdq import find_layers, insert_qdq, node_names, weight_scales

    model = node_names(onnx.load(str(_onnx(build_dir, "fp32"))))
    layers = find_layers(model)
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    weight_scale = {layer.weight: weight_scales(consts[layer.weight], layer.axis, "int8") for layer in layers}
    qdq = insert_qdq(model, layers, {layer.activation: 0.05 for layer in layers}, weight_scale, "int8")
    assert any(n.op_type == "QuantizeLinear" for n in qdq.graph.node)
    onnx.save(qdq, str(tmp_path / "model.int8.onnx"))
    rows = {r["layer"]: r for r in layer_drift(load(build_dir / "tiny.pt"), tmp_path / "model.int8.onnx", feeds,
                                               threshold=0.99999)}
    # LayerNorm is not quantized: its float output is compared, exact; the quantized Linear is where drift enters
    producer = next(n for n in qdq.graph.node if rows["mlp1.0"]["onnx_tensor"] in n.output)
    assert producer.op_type == "LayerNormalization" and producer.name.startswith("/mlp1/mlp1.0/")
    assert rows["mlp1.0"]["cosine"] > 1 - 1e-9
    assert 0.99 < rows["mlp1.1"]["cosine"] < 0.99999 and rows["mlp1.1"]["first_below"]


def test_drift_bad_inputs_are_clear(build_dir, feeds, tmp_path):
    module = load(build_dir / "tiny.pt")
    with pytest.raises(NtcError, match="no such ONNX file"):
        layer_drift(module, tmp_path / "missing.onnx", feeds)
    with pytest.raises(NtcError, match="threshold"):
        layer_drift(module, _onnx(build_dir, "fp32"), feeds, threshold=1.5)
    other = build("mlp2x_gelu", {"input_dim": 48, "output_dim": 32})
    model = onnx.load(str(_onnx(build_dir, "fp32")))
    assert scope_outputs(model, ["mlp.0"]) == {}
    with pytest.raises(NtcError, match="module scope"):
        layer_drift(other, _onnx(build_dir, "fp32"), feeds)


# ---- latency --------------------------------------------------------------------------------------------------------


def test_measure_latency_shape_and_device(build_dir, feeds):
    from ntc_export.evaluate.latency import cpu_isa, cpu_model

    lat = measure_latency(_onnx(build_dir, "fp32"), feeds, batches=(1, 8), repeats=5)
    assert set(lat) >= {"b1", "b8", "device", "backend", "provider"}
    assert lat["backend"] == "onnxruntime" and lat["provider"] == "CPUExecutionProvider"
    assert lat["device"] == f"{cpu_model()}, {cpu_isa()}; ORT fused int8 kernels"
    for b in ("b1", "b8"):
        assert 0 < lat[b]["p50_ms"] <= lat[b]["p90_ms"] and 3 <= lat[b]["runs"] <= 5
    with pytest.raises(NtcError, match="batch sizes"):
        measure_latency(_onnx(build_dir, "fp32"), feeds, batches=(0,))
    with pytest.raises(NtcError, match="needs input"):
        measure_latency(_onnx(build_dir, "fp32"), {"other": feeds["tokens"]})


def _lat(**p50):
    return {p: {"b1": {"p50_ms": v, "p90_ms": v}, "b8": {"p50_ms": 4 * v, "p90_ms": 4 * v}, "executed": True,
                "device": "test CPU", "backend": "onnxruntime", "provider": "CPUExecutionProvider"}
            for p, v in p50.items()}


def test_no_faster_than_fp16_flag():
    flags = no_faster_than_fp16(_lat(fp32=1.0, fp16=2.0, int8=2.1, fp8=1.0))
    assert flags["int8"]["flag"] is True and flags["int8"]["p50_ratio_vs_fp16"]["b1"] == pytest.approx(1.05)
    assert flags["fp8"]["flag"] is False and flags["fp8"]["p50_ratio_vs_fp16"]["b8"] == pytest.approx(0.5)
    assert "fp32" not in flags  # only narrower precisions are expected to beat fp16
    assert no_faster_than_fp16(_lat(fp16=2.0, int8=1.94))["int8"]["flag"] is True  # 3% faster: within the noise margin
    assert no_faster_than_fp16(_lat(fp16=2.0, int8=1.8))["int8"]["flag"] is False
    assert no_faster_than_fp16(_lat(fp32=1.0, int8=1.0)) == {}  # no fp16 baseline measured: no claim


def test_pareto_frontier():
    acc = [{"model": "m", "precision": p, "backend": "onnxruntime", "target": "cpu", "output": "tokens_out",
            "cosine": c, "task_metric": None, "executed": True} for p, c in
           (("fp32", 1.0), ("fp16", 0.9999), ("int8", 0.999), ("fp8", 0.99))]
    lat = [{"model": "m", "precision": p, "backend": "onnxruntime", "executed": True, "b1": {"p50_ms": t}}
           for p, t in (("fp32", 4.0), ("fp16", 2.0), ("int8", 1.0), ("fp8", 3.0))]
    front = {p["precision"]: p["pareto"] for p in pareto_points(acc, lat, [])}
    assert front == {"fp32": True, "fp16": True, "int8": True, "fp8": False}  # fp8 is slower and worse than fp16


# ---- files ----------------------------------------------------------------------------------------------------------


def test_html_has_every_section_and_no_external_reference(written):
    _, files = written
    html = files["html"].read_text()
    for ident in SECTION_IDS:
        assert f'<section id="{ident}">' in html
    assert not re.search(r"https?://", html) and "<link" not in html and "<script" not in html
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert 'id="pareto-plot"' in html and "rate-distortion plot skipped" in html
    md = files["markdown"].read_text()
    for _, title in SECTIONS:
        assert f"## {title}" in md
    assert files["pareto_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "<svg" in files["pareto_svg"].read_text()


def test_json_follows_the_schema_and_the_measurements(written):
    report, files = written
    view = json.loads(files["json"].read_text())
    jsonschema.validate(view, json.loads(SCHEMA_PATH.read_text()))
    assert view["verdict"] == "PASS"
    assert {(r["precision"], r["output"]) for r in view["accuracy"] if r["backend"] == "onnxruntime"} == {
        (p, o) for p in ("fp32", "fp16") for o in ("tokens_out", "logits")}
    lat = {r["precision"]: r for r in view["latency"]}
    assert set(lat) == {"fp32", "fp16"} and lat["fp16"]["b8"]["p50_ms"] == report["latency"]["tiny"]["fp16"]["b8"][
        "p50_ms"]
    drift = {(d["model"], d["precision"]): d for d in view["drift"]}
    assert drift[("tiny", "fp16")]["first_below"] is None and len(drift[("tiny", "fp32")]["layers"]) == 5
    assert {p["precision"] for p in view["pareto"]} == {"fp32", "fp16"}
    out = files["json"].parent.parent
    assert report["models"]["tiny"]["path"] == "../tiny.pt"  # OUT/report.json keeps no machine path
    model_sha = hashlib.sha256(open(out / report["models"]["tiny"]["path"], "rb").read()).hexdigest()
    assert view["reproducibility"]["models"]["tiny"]["sha256"] == model_sha
    arts = {a["path"]: a["sha256"] for a in view["reproducibility"]["artifacts"]}  # relative to the build dir
    onnx_path = report["latency"]["tiny"]["fp16"]["artifact"]
    assert arts["tiny/onnx/decomposed/model.fp16.onnx"] == hashlib.sha256(open(onnx_path, "rb").read()).hexdigest()
    # the schema is a real contract: an engine that did not run may not carry latency numbers
    bad = json.loads(json.dumps(view))
    bad["engines"][0]["latency"] = {"b1": {"p50_ms": 1.0, "p90_ms": 1.0}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, json.loads(SCHEMA_PATH.read_text()))


def test_engines_that_did_not_run_say_so(written):
    _, files = written
    view = json.loads(files["json"].read_text())
    rows = {r["target"]: r for r in view["engines"]}
    for r in view["engines"]:  # built for SMs this machine lacks (or no GPU at all): no number may appear
        assert not r["executed"] and r["latency"] is None and r["reason"].startswith("not executed: ")
    mine = rows["rtx-sm1"]
    assert "no CUDA device" in mine["reason"] or "sm_1," in mine["reason"]
    assert mine["layer_precisions"] == {"fp16": 5, "fp32": 2} and mine["engine_bytes"] == len(FAKE_ENGINE)
    assert rows["jetson-orin"]["reason"].startswith("not executed: TensorRT")
    counted = [d for d in view["devices"]["tensorrt"] if d.startswith(f"{mine['reason']} (")]  # one line per reason
    n_same = sum(r["reason"] == mine["reason"] for r in view["engines"])
    assert counted == [f"{mine['reason']} ({n_same} artifact{'s' if n_same != 1 else ''})"]
    html = files["html"].read_text()
    cells = re.findall(r'<td colspan="2" class="engine-not-run">([^<]*)</td>', html)
    assert len(cells) == len(view["engines"]) and all(c.startswith("not executed: ") for c in cells)
    groups = {g["reason"]: g["items"] for g in view["not_run"]}
    assert "engine tiny fp16 for rtx-sm1, latency" in groups[mine["reason"]]


def test_default_int8_fp8_left_out_when_the_default_calibration_tokens_cannot_feed_the_model(written):
    _, files = written
    view = json.loads(files["json"].read_text())
    reasons = {g["reason"]: g["items"] for g in view["not_run"]}
    why = ("not built: not calibrated: the default calibration tokens are 384-d and tiny (48-d) take other tokens; "
           "give --calib-data")
    assert reasons[why] == ["int8 for any target", "fp8 for any target"]
    assert {r["precision"] for r in view["accuracy"]} == {"fp32", "fp16"}


def test_flag_and_rate_distortion_render(build_dir, tmp_path):
    report = json.loads((build_dir / "out" / "report.json").read_text())
    base = report["records"][0]
    points = (("fp16", 4096, 0.9999, 0.9), ("int8", 2048, 0.999, 0.85))
    report["records"] = [{**base, "precision": p, "output": "tokens_out", "bytes_per_image": b, "cosine": c,
                          "task_metric": a} for p, b, c, a in points]
    report["latency"] = {"tiny": _lat(fp16=2.0, int8=2.5)}
    files = write_report(tmp_path, report)
    html = files["html"].read_text()
    assert 'id="rate-distortion-plot"' in html and files["rate_distortion_png"].is_file()
    assert html.count('<span class="flag">no faster than fp16</span>') == 2  # summary and the int8 row
    view = json.loads(files["json"].read_text())
    assert [r["precision"] for r in view["latency"] if r["no_faster_than_fp16"]] == ["int8"]
    assert "**no faster than fp16**" in files["markdown"].read_text()


def test_report_command(build_dir, capsys):
    out = build_dir / "out"
    shutil.rmtree(out / "report", ignore_errors=True)
    assert main(["report", str(out), "--json", "--quiet"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["schema"] == "ntc-export/report/2" and {r["precision"] for r in view["latency"]} == {"fp32", "fp16"}
    assert (out / "report" / "index.html").is_file() and (out / "report" / "report.md").is_file()
    assert main(["report", str(build_dir)]) == 2
    assert "no report.json" in capsys.readouterr().err


def test_polygraphy_round_trip(tmp_path):
    from polygraphy.comparator import RunResults

    runs = {"pytorch": {"tokens_out": np.arange(12, dtype=np.float32).reshape(3, 4)},
            "onnxruntime-cpu": {"tokens_out": np.full((3, 4), 0.5, np.float16), "logits": np.eye(3)}}
    path = save_polygraphy_results(tmp_path / "runs.json", runs)
    loaded = RunResults.load(str(path))
    assert [name for name, _ in loaded.items()] == ["pytorch", "onnxruntime-cpu"]
    got = loaded["onnxruntime-cpu"][0]
    assert got["tokens_out"].dtype == np.float16 and np.array_equal(got["logits"], np.eye(3))
    assert np.array_equal(load_polygraphy_results(path)["pytorch"]["tokens_out"], runs["pytorch"]["tokens_out"])
    with pytest.raises(NtcError, match="no outputs"):
        save_polygraphy_results(tmp_path / "bad.json", {"x": {}})


def test_report_keeps_a_token_reduction_table(build_dir, tmp_path, capsys):
    out = shutil.copytree(build_dir / "out", tmp_path / "out")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": [{"model": "x"}]}))
    assert main(["report", str(out), "--token-reduction", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a token-reduction table" in err[0] and not (out / "token_reduction.json").exists()

    rows = [{"model": "tome_64", "family": "tome", "ratio": 4.0, "tokens_per_image": 64.0, "saliency_r": 0.9903,
             "probe_accuracy": 0.61, "rel_error": 0.15, "readout": None},
            {"model": "average pool 64", "family": "average pool (baseline)", "ratio": 4.0, "tokens_per_image": 64.0,
             "saliency_r": 0.95, "probe_accuracy": 0.6, "rel_error": 0.3, "readout": None}]
    table = tmp_path / "rd.json"
    table.write_text(json.dumps({"data": "builtin:photos/val@224", "fit_data": "/somewhere/train.npz", "samples": 504,
                                 "task": "builtin:stamps/val@224", "task_samples": 300, "rows": rows}))
    assert main(["report", str(out), "--token-reduction", str(table), "--quiet"]) == 0
    assert main(["report", str(out), "--json", "--quiet"]) == 0  # a later report still shows it
    view = json.loads(capsys.readouterr().out)
    assert view["token_reduction"]["rows"] == rows and "fit_data" not in view["token_reduction"]
    assert view["plots"]["token_reduction"] == "token-reduction.png"
    html = (out / "report" / "index.html").read_text()
    assert 'id="token-reduction-plot"' in html and "<td class=\"n\">0.9903</td>" in html
    md = (out / "report.md").read_text()
    assert "| tome_64 | tome | 4.00 | 64.0 | 0.9903 | 0.610 | 0.150 | — |" in md
