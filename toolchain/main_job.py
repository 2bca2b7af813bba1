"""The main job: tokens -> export -> validate -> report, as cached stages under one output directory."""

import shlex
import sys
import time
from pathlib import Path

from rich.console import Console

from . import models as _models  # noqa: F401  (registers architectures)
from .atomic import write_json
from .errors import NtcError
from .export import export_model
from .hashing import sha256_file, sha256_json, tool_versions
from .models import load
from .pipeline import Pipeline
from .report_files import write_reports
from .validate import failures, validate_onnx

DEFAULT_PRECISIONS = ("fp32", "fp16")
EXPORT_PRECISIONS = ("fp32", "fp16")


def load_data(data: Path | None):
    """Held-out tokens: the given file, or the built-in digits validation split (disjoint from training)."""
    from .tokens import builtin_tokens, load_tokens

    if data is not None:
        tokens = load_tokens(data)
        return tokens, str(data)
    return builtin_tokens("digits", 224, split="val"), "builtin:digits/val@224"


def token_hash(tokens) -> str:
    import hashlib

    h = hashlib.sha256(tokens.tokens.tobytes())
    if tokens.labels is not None:
        h.update(tokens.labels.tobytes())
    return h.hexdigest()


def run_main_job(model_paths: list[Path], out_dir: Path, data: Path | None = None, precisions=DEFAULT_PRECISIONS,
                 attention: str = "decomposed", quiet: bool = False, command: str | None = None) -> dict:
    """Run every stage for every model; returns the report dict (also written to OUT/report.json)."""
    console = Console(stderr=True, quiet=quiet)
    out_dir = Path(out_dir)
    started = time.perf_counter()
    modules = {}
    for path in model_paths:
        modules[Path(path).stem] = (Path(path), load(path))  # fail early on a bad checkpoint, before any work
    if len(modules) != len(model_paths):
        raise NtcError("two models share a file name; their outputs would collide")
    unknown = [p for p in precisions if p not in EXPORT_PRECISIONS]
    if unknown:
        raise NtcError(f"precision(s) {', '.join(unknown)} are not available in this pipeline yet")

    pipe = Pipeline(out_dir, console=console, quiet=quiet)
    tokens, source = load_data(data)
    held_out = tokens.patch_tokens
    data_hash = token_hash(tokens)
    versions = tool_versions()
    records = []
    for name, (path, module) in modules.items():
        model_hash = sha256_file(path)
        onnx_dir = out_dir / name / "onnx"
        exported = pipe.stage(
            f"{name}/export",
            {"model": model_hash, "precisions": list(precisions), "attention": attention, "versions": versions},
            lambda: {p: str(f.relative_to(out_dir)) for p, f in
                     export_model(module, onnx_dir, precisions, attention=attention).items()},
            outputs=lambda r: list(r.values()))
        onnx_paths = {p: out_dir / f for p, f in exported.items()}
        records += pipe.stage(
            f"{name}/validate",
            {"onnx": {p: sha256_file(f) for p, f in onnx_paths.items()}, "model": model_hash, "data": data_hash,
             "versions": versions},
            lambda: validate_onnx(name, module, onnx_paths, held_out, tokens.labels))

    report = {
        "command": command or " ".join(map(shlex.quote, ["ntc-export", *sys.argv[1:]])),
        "data": {"source": source, "sha256": data_hash, "samples": int(len(held_out)), "grid": list(tokens.grid)},
        "models": {n: {"path": str(p), "sha256": sha256_file(p), "arch": m.arch, "config": m.config}
                   for n, (p, m) in modules.items()},
        "records": records,
        "pass": not failures(records),
        "stages": pipe.summary(),
        "versions": versions,
    }
    write_reports(out_dir, report)
    manifest = {
        "inputs": {**{n: r["sha256"] for n, r in report["models"].items()}, "data": data_hash},
        "versions": versions,
        "stages": report["stages"],
        "stages_run": [s["name"] for s in report["stages"] if s["status"] == "ran"],
        "stages_skipped": [s["name"] for s in report["stages"] if s["status"] == "skipped"],
        "seconds": time.perf_counter() - started,
        "command": report["command"],
        "config_hash": sha256_json({"precisions": list(precisions), "attention": attention}),
    }
    write_json(out_dir / "manifest.json", manifest)
    console.print(f"report: {out_dir / 'report.md'}  ({'PASS' if report['pass'] else 'FAIL'}, "
                  f"{len(manifest['stages_run'])} stages run, {len(manifest['stages_skipped'])} skipped)")
    return report
