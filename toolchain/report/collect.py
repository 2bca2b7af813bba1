"""Assemble the report view (what report.json holds and the HTML/Markdown render) from the main job's report dict.

Input keys beyond the main job's (command, data, models, records, pass, stages, versions), all optional:
  "latency":     {model: {precision: measure_latency(...) result}}         ONNX Runtime, measured here
  "drift":       {model: {precision: layer_drift(...) rows}}
  "engines":     [engines/manifest.json entries, each optionally with "latency": engine_latency(...) result]
  "calibration": {model: {precision: {"data_sha256": ..., "method": ..., ...}}}
The build directory's token_reduction.json (`ntc-export report --token-reduction`), when present, is shown too.
Every path in the view is relative to the build directory (files outside it: their name; the hash sits beside it).
"""

import datetime as _dt
from pathlib import Path

from . import token_reduction
from .decision import decision
from .payload import payload_decision
from .latency_flags import is_batch_key, no_faster_than_fp16
from .not_run import general_reason, not_run
from .paths import portable, portable_command, portable_source, strip_build_dir

SCHEMA_ID = "ntc-export/report/2"


def _verdict(record: dict) -> str:
    if not record.get("executed", True):
        return "not executed"
    return "pass" if record.get("pass", False) else "FAIL"


def accuracy_rows(records: list[dict], build_dir=".") -> list[dict]:
    keys = ("model", "precision", "target", "backend", "output", "max_abs", "rel_l2", "cosine", "snr_db",
            "task_metric", "task_metric_golden", "threshold", "samples", "bytes_per_image")
    lowerings: dict[str, set] = {}
    for r in records:
        if r.get("lowering"):
            lowerings.setdefault(r["model"], set()).add(r["lowering"])
    rows = []
    for r in records:
        row = {k: r.get(k) for k in keys}
        if r.get("lowering") and len(lowerings.get(r["model"], ())) > 1:  # validated as several lowerings
            row["target"] = f"{r['target']} ({r['lowering']} attention)"
        row["executed"] = bool(r.get("executed", True))
        row["lowering"], row["artifact"] = r.get("lowering"), portable(r.get("artifact"), build_dir)
        row["verdict"] = _verdict(r)
        row["reason"] = r.get("reason") if not row["executed"] else None
        rows.append(row)
    return rows


def drift_sections(drift: dict) -> list[dict]:
    out = []
    for model, per_precision in sorted(drift.items()):
        for precision, layers in per_precision.items():
            first = next((row["layer"] for row in layers if row.get("first_below")), None)
            threshold = layers[0].get("threshold") if layers else None
            out.append({"model": model, "precision": precision, "threshold": threshold, "first_below": first,
                        "layers": layers})
    return out


def latency_rows(latency: dict) -> list[dict]:
    rows = []
    for model, per_precision in sorted(latency.items()):
        flags = no_faster_than_fp16(per_precision)
        for precision, lat in per_precision.items():
            flag = flags.get(precision)
            rows.append({"model": model, "precision": precision, **lat,
                         "executed": bool(lat.get("executed", True)),
                         "no_faster_than_fp16": flag["flag"] if flag else None,
                         "p50_ratio_vs_fp16": flag["p50_ratio_vs_fp16"] if flag else None})
    return rows


def engine_rows(engines: list[dict], build_dir=".") -> list[dict]:
    rows = []
    for e in engines:
        lat = e.get("latency") or {}
        executed = bool(lat.get("executed", False))
        reason = lat.get("reason") or e.get("reason") or ("" if executed else "no GPU")
        rows.append({
            "model": e.get("model"), "target": e.get("target"), "precision": e.get("precision"),
            "kind": e.get("kind"), "backend": e.get("backend"), "backend_version": e.get("backend_version"),
            "sm": e.get("sm"), "engine": e.get("engine") or e.get("bundle"), "engine_bytes": e.get("engine_bytes"),
            "weight_bytes": e.get("weight_bytes"), "onnx": portable(e.get("onnx"), build_dir),
            "build_seconds": e.get("build_seconds"), "sha256": e.get("sha256"),
            "layer_precisions": (e.get("layer_summary") or {}).get("by_precision"),
            "layers": (e.get("layer_summary") or {}).get("layers"),
            "plugins": [f"{p.get('op')} v{p.get('version', '?')} ({p.get('provider', '?')})"
                        for p in e.get("plugins", [])],
            "executed": executed,
            "reason": None if executed else reason if reason.startswith("not executed") else f"not executed: {reason}",
            "latency": {k: v for k, v in lat.items() if is_batch_key(k)} if executed else None,
            "device": lat.get("device") if executed else None,
        })
    return rows


def _primary(rows: list[dict]) -> dict[tuple, dict]:
    """(model, precision, backend, target) -> the row of the first output (the tokens, before any task head)."""
    out = {}
    for r in rows:
        if r["executed"]:
            out.setdefault((r["model"], r["precision"], r["backend"], r["target"]), r)
    return out


def pareto_points(acc: list[dict], lat: list[dict], engines: list[dict]) -> list[dict]:
    """Accuracy (cosine of the primary output) vs measured p50 latency; unmeasured pairs are left out."""
    primary = _primary(acc)
    points = []
    for row in lat:
        if not row["executed"]:
            continue
        match = [r for (m, p, b, _), r in primary.items() if (m, p, b) == (row["model"], row["precision"],
                                                                          row.get("backend", "onnxruntime"))]
        if match:
            snr = _worst_snr(acc, match[0]["model"], match[0]["precision"], match[0]["backend"], match[0]["target"])
            points.append(_point(row["model"], row["precision"], "onnxruntime cpu", match[0], row, snr))
    for e in engines:
        if e["executed"] and e["latency"]:
            r = next((r for (m, p, b, t), r in primary.items() if (m, p, t) == (e["model"], e["precision"],
                                                                                 e["target"])), None)
            if r:
                snr = _worst_snr(acc, r["model"], r["precision"], r["backend"], r["target"])
                points.append(_point(e["model"], e["precision"], f"{e['backend']} {e['target']}", r, e["latency"],
                                     snr))
    for model in {p["model"] for p in points}:
        best = float("-inf")  # highest cosine among faster points: a point is on the frontier when it beats it
        for p in sorted((p for p in points if p["model"] == model), key=lambda p: (p["latency_ms"], -p["cosine"])):
            p["pareto"] = p["cosine"] > best
            best = max(best, p["cosine"])
    return points


def _point(model, precision, where, acc_row, lat, worst_snr=None) -> dict:
    key = "b1" if "b1" in lat else sorted((k for k in lat if is_batch_key(k)), key=lambda k: int(k[1:]))[0]
    return {"model": model, "precision": precision, "where": where, "output": acc_row["output"],
            "cosine": acc_row["cosine"], "task_metric": acc_row["task_metric"], "batch": int(key[1:]),
            "latency_ms": lat[key]["p50_ms"], "worst_snr_db": worst_snr, "pareto": False}


def _worst_snr(acc: list[dict], model, precision, backend, target) -> float | None:
    """The lowest SNR over the outputs of one validated graph (what the trade-off chart plots)."""
    values = [r["snr_db"] for r in acc if r["executed"] and r.get("snr_db") is not None
              and (r["model"], r["precision"], r["backend"], r["target"]) == (model, precision, backend, target)]
    return min(values) if values else None


def tradeoff_points(table: dict, pareto: list[dict], acc: list[dict]) -> dict:
    """What the trade-off chart plots: the decision rows of the target with the most sized engines (SNR vs bytes),
    and every measured latency point (SNR vs p50), each with whether its graph meets its thresholds."""
    sized: dict[str, int] = {}
    for r in table["rows"]:
        if r["engine_bytes"] is not None and r["worst_snr_db"] is not None:
            sized[r["target"]] = sized.get(r["target"], 0) + 1
    target = max(sized, key=lambda t: (sized[t], -table["targets"].index(t))) if sized else None
    size = [{k: r[k] for k in ("model", "precision", "engine_bytes", "worst_snr_db", "meets_thresholds")}
            for r in table["rows"] if r["target"] == target and r["engine_bytes"] is not None
            and r["worst_snr_db"] is not None]
    verdicts: dict[tuple, bool] = {}
    for r in acc:
        if r["executed"]:
            key = (r["model"], r["precision"])
            verdicts[key] = verdicts.get(key, True) and r["verdict"] == "pass"
    latency = [{"model": p["model"], "precision": p["precision"], "where": p["where"], "batch": p["batch"],
                "latency_ms": p["latency_ms"], "worst_snr_db": p["worst_snr_db"],
                "meets_thresholds": verdicts.get((p["model"], p["precision"]))} for p in pareto
               if p.get("worst_snr_db") is not None]
    return {"size_target": target, "size": size, "latency": latency}


def rate_points(acc: list[dict], compression: list[dict] = ()) -> list[dict]:
    """Compressor points: the main job's reconstruction-vs-input measurements, else records carrying bytes."""
    if compression:
        return [{"model": c["model"], "series": c.get("series", c["model"]), "precision": c["precision"],
                 "family": c.get("family"), "arch": c.get("arch"),
                 "target": c.get("target", "cpu"), "output": "tokens_out", "bytes_per_image": c["bytes_per_image"],
                 "cosine": c["cosine"], "task_metric": c.get("task_metric"), "decode_cost": c.get("decode_cost"),
                 "decode_flops": (c.get("decode_cost") or {}).get("flops")} for c in compression]
    return [{"model": r["model"], "precision": r["precision"], "target": r["target"], "output": r["output"],
             "bytes_per_image": r["bytes_per_image"], "cosine": r["cosine"], "task_metric": r["task_metric"]}
            for r in acc if r["executed"] and r.get("bytes_per_image") is not None]


def engine_devices(eng: list[dict]) -> list[str]:
    """Where engine numbers come from: the GPUs they ran on, else each distinct reason they did not run (artifact
    names masked) with how many engines and bundles it covers."""
    ran = sorted({e["device"] for e in eng if e["executed"] and e.get("device")})
    if ran:
        return ran
    counts: dict[str, int] = {}
    for e in eng:
        if e["reason"]:
            reason = general_reason(e["reason"], e["model"], e["precision"])
            counts[reason] = counts.get(reason, 0) + 1
    return [f"{reason} ({n} {'artifacts' if n != 1 else 'artifact'})" for reason, n in sorted(counts.items())] or [
        "no engines in this build"]


def build_view(out_dir, report: dict) -> dict:
    """The full report view: every section the HTML, Markdown and JSON outputs show, with portable paths."""
    out_dir = Path(out_dir)
    latency, drift = report.get("latency") or {}, report.get("drift") or {}
    engines = report.get("engines") or []
    acc = accuracy_rows(report.get("records", []), out_dir)
    lat = latency_rows(latency)
    eng = engine_rows(engines, out_dir)
    devices = sorted({r["device"] for r in lat if r["executed"] and r.get("device")} |
                     {e["device"] for e in eng if e["executed"] and e.get("device")})
    for row in lat:
        row["artifact"] = portable(row.get("artifact"), out_dir)
    view = {
        "schema": SCHEMA_ID,
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "build_dir": out_dir.resolve().name,  # paths below are relative to it
        "verdict": "PASS" if report.get("pass", all(r["verdict"] != "FAIL" for r in acc)) else "FAIL",
        "data": portable_data(report.get("data", {}), out_dir),
        "devices": {"measured_on": devices, "tensorrt": engine_devices(eng)},
        "decision": decision(acc, eng),
        "accuracy": acc,
        "drift": drift_sections(drift),
        "latency": lat,
        "engines": eng,
        "pareto": pareto_points(acc, lat, eng),
        "tradeoff": None,  # filled below from the decision rows and the Pareto points
        "rate_distortion": rate_points(acc, report.get("compression") or []),
        "token_reduction": token_reduction.load(out_dir),
        "not_run": not_run(acc, eng, latency, drift, report.get("refused") or []),
        "reproducibility": reproducibility(report, out_dir),
        "stages": report.get("stages", []),
        "kept_high_precision": [f"{c['model']} {c['precision']} ({c['lowering']}): "
                                f"{', '.join(c['kept_high_precision'])}"
                                for c in report.get("calibrated_graphs") or [] if c.get("kept_high_precision")],
        "int8_interfaces": [f"{c['model']} int8 ({c['lowering']}): int8 " + ", ".join(
                                f"{t} (scale {s['scale']:.4g})" for t, s in c["int8_interface"].items())
                            + " at the interface (other float inputs fp16), fp32 inside (no weights to quantize)"
                            for c in report.get("calibrated_graphs") or [] if c.get("int8_interface")],
    }
    view["tradeoff"] = tradeoff_points(view["decision"], view["pareto"], acc)
    view["payload"] = payload_decision(view["rate_distortion"], view["decision"]["targets"],
                                       report.get("payload_rule"))
    view["references_skipped"] = report.get("references_skipped")
    return strip_build_dir(view, out_dir)


def portable_data(data: dict | None, build_dir) -> dict | None:
    return {**data, "source": portable_source(data.get("source"), build_dir)} if data else data


def reproducibility(report: dict, build_dir=".") -> dict:
    """Command, versions, models and data from the report; hashed files from its "hashed_files" (measured by the
    caller: rendering reads no file). Paths relative to the build directory, files outside it by name."""
    hashed = report.get("hashed_files") or {}

    def files(key):
        return [{**f, "path": portable(f.get("path"), build_dir)} for f in hashed.get(key, []) if f]

    return {"command": portable_command(report.get("command"), build_dir), "versions": report.get("versions", {}),
            "models": {n: {"path": portable(m.get("path"), build_dir), "sha256": m.get("sha256"),
                           "arch": m.get("arch")} for n, m in report.get("models", {}).items()},
            "data": portable_data(report.get("data", {}), build_dir),
            "calibration_data": portable_data(report.get("calibration_data"), build_dir),
            "calibration": report.get("calibration", {}),
            "calibration_files": files("calibration_files"), "artifacts": files("artifacts"),
            "plugin_libraries": files("plugin_libraries")}


def hashed_inputs(repro: dict) -> list[tuple]:
    """(what, path, sha256) of everything the reproducibility block names: models, data, calibration files,
    artifacts, plugin libraries."""
    r = repro
    return ([(f"model {n}", m.get("path"), m.get("sha256")) for n, m in r["models"].items()]
            + [("held-out data", r["data"].get("source"), r["data"].get("sha256"))]
            + ([("calibration data", r["calibration_data"].get("source"), r["calibration_data"].get("sha256"))]
               if r.get("calibration_data") else [])
            + [(f["what"], f["path"], f["sha256"]) for f in r["calibration_files"]]
            + [("artifact", a["path"], a["sha256"]) for a in r["artifacts"]]
            + [(p["what"], p["path"], p.get("sha256")) for p in r["plugin_libraries"]])
