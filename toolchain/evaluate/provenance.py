"""Provenance of a build: the command, tool versions and the hash of every input, artifact and plugin library, for
the report's reproducibility block (computed here so rendering the report reads files only through its dict)."""

from pathlib import Path

from ..backend.onnx.inspect import has_custom_ops
from ..native.host import built_host_library
from ..native.kernels import kernels_library_path
from ..util.hashing import sha256_file
from ..util.paths import PLUGINS_DIR


def resolve_artifact(out_dir, artifact) -> Path:
    """An artifact path as recorded (absolute, relative to the job's working directory, or to OUT), made to point
    into `out_dir`; the recorded path when nothing matches."""
    path = Path(artifact)
    if path.is_absolute() or path.exists():
        return path
    parts = path.parts
    for root in (Path(out_dir), Path(out_dir) / "engines"):  # engine manifests record paths under OUT/engines
        for k in range(len(parts)):
            candidate = root.joinpath(*parts[k:])
            if candidate.exists():
                return candidate
    return path


def _file_entry(path: Path, what: str) -> dict | None:
    return {"what": what, "path": str(path), "sha256": sha256_file(path)} if path.is_file() else None


def plugin_libraries(engines: list[dict], artifacts: list[str]) -> list[dict]:
    """The plugin libraries this report's artifacts depend on, with their hashes."""
    libs, seen = [], set()
    for e in engines:
        for p in e.get("plugins", []):
            if p.get("library") and (p["library"], p.get("library_sha256")) not in seen:
                seen.add((p["library"], p.get("library_sha256")))
                libs.append({"what": f"TensorRT plugins of {e.get('model')}", "path": p["library"],
                             "sha256": p.get("library_sha256")})
    candidates = [(PLUGINS_DIR / "build" / "libntc_trt_plugins.so", "TensorRT plugin library")]
    try:
        candidates.append((kernels_library_path(), "CUDA kernels"))
    except Exception:  # not built on this machine: nothing to hash
        pass
    if any(_has_ntc_nodes(a) for a in artifacts) and (host := built_host_library()) is not None:
        candidates.append((host, "host (CPU) plugin library for ONNX Runtime custom ops"))
    for path, what in candidates:
        entry = _file_entry(Path(path), what)
        if entry and str(path) not in seen:
            seen.add(str(path))
            libs.append(entry)
    return libs


def _has_ntc_nodes(artifact) -> bool:
    if not artifact or not str(artifact).endswith(".onnx") or not Path(artifact).is_file():
        return False
    return has_custom_ops(Path(artifact))


def hashed_files(out_dir: Path, report: dict, engines: list[dict]) -> dict:
    """The hashed part of the report's reproducibility block: calibration caches, artifacts, plugin libraries."""
    records = report.get("records", [])
    artifacts = sorted({str(resolve_artifact(out_dir, r["artifact"])) for r in records if r.get("artifact")})
    calib_files = sorted(Path(out_dir).glob("**/calibration/*.json"))
    return {
        "calibration_files": [_file_entry(p, "calibration cache") for p in calib_files],
        "artifacts": [{"path": a, "sha256": sha256_file(a) if Path(a).is_file() else None} for a in artifacts],
        "plugin_libraries": plugin_libraries(engines, artifacts),
    }
