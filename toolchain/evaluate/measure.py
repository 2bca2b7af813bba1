"""Measure what the report needs from a build directory's artifacts: ORT latency, per-layer drift, engine latency."""

import json
from pathlib import Path

from ..util.errors import NtcError
from .drift import drift_threshold, layer_drift
from .latency import engine_latency, measure_latency
from .provenance import hashed_files, resolve_artifact


def load_build(out_dir) -> dict:
    """The main job's OUT/report.json, with "engines" from OUT/engines/manifest.json when the report lacks them."""
    out_dir = Path(out_dir)
    path = out_dir / "report.json"
    if not path.is_file():
        raise NtcError(f"{out_dir}: no report.json; run the main job (ntc-export MODEL.pt --out {out_dir}) first")
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise NtcError(f"{path}: corrupt JSON ({e})") from None
    if not isinstance(report, dict) or "records" not in report:
        raise NtcError(f"{path}: not a main-job report (no 'records')")
    if "engines" not in report:
        manifest = out_dir / "engines" / "manifest.json"
        if manifest.is_file():
            from ..backend.trt.manifest import read_manifest

            report["engines"] = read_manifest(out_dir)["engines"]
    return report


def checkpoint(out_dir, name: str, info: dict | None) -> Path:
    """A model's checkpoint as the report records it (by name: report.json keeps no machine path), looked for as
    recorded, in the build directory, the working directory and the zoo, and matched by its sha256."""
    from ..util.hashing import sha256_file
    from ..util.paths import ZOO_DIR

    recorded = Path((info or {}).get("path") or f"{name}.pt")
    for path in (recorded, Path(out_dir) / recorded, Path(recorded.name), ZOO_DIR / recorded.name):
        if path.is_file() and (not (info or {}).get("sha256") or sha256_file(path) == info["sha256"]):
            return path
    raise NtcError(f"model {name}: its checkpoint {recorded.name} is not in the build directory, the working "
                   "directory or the zoo (with the recorded sha256); cannot measure")


def onnx_artifacts(out_dir, report: dict) -> dict[str, dict[str, Path]]:
    """{model: {precision: ONNX path}} of the ONNX Runtime records."""
    found: dict[str, dict[str, Path]] = {}
    for r in report.get("records", []):
        art = r.get("artifact")
        if r.get("backend") == "onnxruntime" and art and str(art).endswith(".onnx"):
            # one lowering per precision (the first validated): latency and drift compare precisions, not lowerings
            found.setdefault(r["model"], {}).setdefault(r["precision"], resolve_artifact(out_dir, art))
    return found


def model_feeds_for(report: dict, model_name: str, module, out_dir="."):
    """The held-out feeds for `module`, from the data source the main job recorded (of its most numerous grid, when
    it holds several: latency and drift are measured on one input shape)."""
    from .feeds import largest_group
    from ..data.tokens import load_data
    from .validate import model_feeds

    source = report.get("data", {}).get("source", "")
    path = None if str(source).startswith("builtin:") else resolve_artifact(out_dir, source.split("[")[0])
    tokens, _ = load_data(path, attention=bool(getattr(module, "token_fields", ())))
    return largest_group(model_feeds(module, tokens))


def measure_build(out_dir, report: dict, feeds_by_model: dict | None = None, batches=(1, 8),
                  drift_samples: int = 4) -> dict:
    """The report dict with "latency", "drift" and engine "latency" filled in from measurements on this machine."""
    from ..models import load

    out_dir = Path(out_dir)
    report = dict(report)
    latency, drift = {}, {}
    feeds_by_model = dict(feeds_by_model or {})
    for model_name, per_precision in onnx_artifacts(out_dir, report).items():
        module = load(checkpoint(out_dir, model_name, report.get("models", {}).get(model_name)))
        feeds = feeds_by_model.get(model_name)
        if feeds is None:
            feeds = feeds_by_model[model_name] = model_feeds_for(report, model_name, module, out_dir)
        for precision, path in per_precision.items():
            lat = measure_latency(path, feeds, batches=batches)
            latency.setdefault(model_name, {})[precision] = {**lat, "artifact": str(path)}
            drift.setdefault(model_name, {})[precision] = layer_drift(
                module, path, feeds, threshold=drift_threshold(precision), samples=drift_samples)
    engines = []
    for entry in report.get("engines", []):
        feeds = feeds_by_model.get(entry.get("model"))
        lat = (engine_latency(out_dir, entry, feeds, batches=batches) if feeds is not None
               else engine_latency(out_dir, {**entry, "engine": None,
                                             "reason": entry.get("reason") or "no held-out feeds for this model"}, {}))
        engines.append({**entry, "latency": lat})
    report.update(latency=latency, drift=drift, engines=engines)
    report["hashed_files"] = hashed_files(out_dir, report, engines)
    return report
