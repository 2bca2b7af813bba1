"""`ntc-export build MODEL.pt|MODEL.onnx --target T --precision P --out DIR`.

TensorRT-RTX targets get engines built here; TensorRT targets (Jetson, datacenter) get deploy bundles.
"""

import json
from pathlib import Path

import click

from ..backend.trt.targets import DEFAULT_TARGETS, PRECISIONS, TARGETS
from ..pipeline.executor import EXECUTORS
from .options import CALIB_METHODS, batch_option, grid_option, int4_block_option


def _plan(targets, precisions, skip_unsupported):
    """(target, precision) pairs to build and the refused ones; refusals are an error unless skipped."""
    from ..backend.trt.targets import plan_builds
    from ..util.errors import NtcError

    todo, refused = plan_builds(targets, precisions)
    if refused and not skip_unsupported:
        raise NtcError("; ".join(r["reason"] for r in refused) + " (drop them or pass --skip-unsupported)")
    return todo, refused


def _calibrated(module, fp32: Path, precision: str, calib, method: str, out_dir: Path,
                int4_block: int | None = None) -> Path:
    """A checkpoint's Q/DQ graph: `fp32` calibrated on its own feeds from the calibration tokens (a token
    reducer without weights: its int8-interface graph)."""
    from ..calibration.api import calibrate
    from ..calibration.interface import calibrate_interface, has_weight_layers
    from ..evaluate.validate import model_feeds

    feeds = model_feeds(module, calib)
    streams = getattr(module, "int8_streams", ())
    if streams and precision == "int8" and not has_weight_layers(fp32):
        calibrate_interface(fp32, feeds, streams, out_dir)
        return Path(out_dir) / "model.int8.onnx"
    result = calibrate(fp32, feeds, precision, method, out_dir, log=lambda text: click.echo(text, err=True),
                       block_size=int4_block)
    return Path(result.model_path)


def _onnx_sources(model: Path, todo, out_dir: Path, module, calib=None, method: str = "mse",
                  int4_block: int | None = None) -> dict[tuple[str, str], Path]:
    """(attention, precision) -> ONNX: exported from a checkpoint per attention lowering (INT8/FP8: then calibrated
    on `calib`), or the given ONNX as is."""
    from ..backend.onnx.inspect import load_onnx_for, onnx_precision
    from ..util.errors import NtcError

    if model.suffix == ".onnx":
        import onnx

        try:
            typed = onnx_precision(onnx.load(str(model), load_external_data=False))
        except Exception as e:  # protobuf's DecodeError and friends
            raise NtcError(f"{model}: not a readable ONNX model ({str(e)[:200]})") from None
        for _, p in todo:
            if p != typed:
                raise NtcError(f"{model.name} is {typed}-typed, so it builds {typed} only; pass a {p} ONNX for {p}")
        load_onnx_for(model, typed)
        return {(t.attention, p): model for t, p in todo}
    from ..backend.onnx.export import PRECISIONS as EXPORTED
    from ..backend.onnx.export import export_model
    from ..pipeline.main_job import QUANTIZED

    other = sorted({p for _, p in todo if p not in EXPORTED and p not in QUANTIZED})
    if other:
        raise NtcError(f"{', '.join(other)} need a converted ONNX; a checkpoint exports {'/'.join(EXPORTED)} and "
                       f"calibrates {'/'.join(QUANTIZED)}")
    sources = {}
    for attention in sorted({t.attention for t, _ in todo}):
        wanted = sorted({p for t, p in todo if t.attention == attention})
        exported = sorted({p for p in wanted if p in EXPORTED} | ({"fp32"} if set(wanted) & set(QUANTIZED) else set()))
        folder = out_dir / "onnx" / attention
        paths = export_model(module, folder, precisions=exported, attention=attention, name=model.stem)
        sources.update({(attention, p): Path(path) for p, path in paths.items()})
        for p in (p for p in wanted if p in QUANTIZED):
            sources[(attention, p)] = _calibrated(module, Path(paths["fp32"]), p, calib, method, folder, int4_block)
    return sources


def _check_sources(sources: dict, shapes: dict | None, batch, grid) -> None:
    """Every graph to build takes its profiles (dynamic axes where they vary, static sizes kept): checked before
    any build starts, so a mismatch is one line and nothing half-built."""
    import onnx

    from ..backend.onnx.inspect import onnx_inputs
    from ..backend.trt.profiles import check_profiles

    for path in dict.fromkeys(sources.values()):
        check_profiles(Path(path).name, onnx_inputs(onnx.load(str(path), load_external_data=False)), shapes,
                       batch, grid)


@click.command("build")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--target", "targets", multiple=True, type=click.Choice(list(TARGETS)), default=DEFAULT_TARGETS,
              show_default=True, help="Target profile(s); repeat the flag. See `ntc-export targets`.")
@click.option("--precision", "precisions", multiple=True, type=click.Choice(PRECISIONS),
              help="Precision(s); repeat the flag. Default: fp16 for a checkpoint, the ONNX's own type for an ONNX.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output directory: engines/<target>/..., engines/manifest.json.")
@batch_option
@grid_option
@click.option("--plugin-lib", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="libntc_trt_plugins.so to embed in TensorRT-RTX engines (default: Python plugin creators).")
@click.option("--calib-data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Calibration tokens for int8/fp8 from a checkpoint (default: the photo corpus's calibration "
                   "split); the manifest records them.")
@click.option("--calib-method", type=click.Choice(CALIB_METHODS), default="mse", show_default=True,
              help="INT8/FP8 calibration method for a checkpoint.")
@int4_block_option
@click.option("--skip-unsupported", is_flag=True, help="Skip (and list) target/precision pairs a target cannot build.")
@click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True,
              help="Where engine builds run: a local process pool, or one Ray task per build (pip install "
                   "'ntc-export[ray]').")
@click.option("--jobs", "n_jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Engine builds at once (local: worker processes; ray with a local cluster: its CPUs).")
@click.option("--ray-address", default=None,
              help="Ray cluster to submit builds to (nodes advertise sm_<N> resources); default: a local one.")
@click.option("--epcontext", is_flag=True,
              help="Also write <model>.<precision>.ctx.onnx beside each TensorRT-RTX engine: an ONNX Runtime EPContext "
                   "model that apps load with the TensorRT-RTX execution provider (engines up to 1 MiB embedded, "
                   "larger ones referenced by file name); the manifest records it.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def command(model, targets, precisions, out_dir, batch, grid, plugin_lib, calib_data, calib_method, int4_block,
            skip_unsupported,
            executor, n_jobs, ray_address, epcontext, as_json):
    """Build TensorRT-RTX engines ahead of time (RTX targets) and deploy bundles (Jetson / TensorRT targets)."""
    from ..backend.onnx.inspect import onnx_precision
    from ..backend.trt.bundle import write_bundle
    from ..backend.trt.profiles import check_grid_sides
    from ..backend.trt.targets import get_target
    from ..models import load
    from ..pipeline.executor import BuildJob, run_builds
    from ..pipeline.main_job import QUANTIZED

    chosen = [get_target(t) for t in dict.fromkeys(targets)]
    if not precisions:
        if model.suffix == ".onnx":
            import onnx

            precisions = (onnx_precision(onnx.load(str(model), load_external_data=False)),)
        else:
            precisions = ("fp16",)
    todo, refused = _plan(chosen, list(dict.fromkeys(precisions)), skip_unsupported)
    # A checkpoint knows its inputs (token or BC-block tensors): its profiles cover every dynamic input.
    module = load(model) if model.suffix != ".onnx" else None
    if module is not None:
        check_grid_sides(grid, getattr(module, "side_multiple", 1), getattr(module, "side_rule", None), model.name)
    shapes = module.input_profiles(batch, grid) if module is not None else None
    name = model.stem if module is not None else None  # an ONNX keeps its own model name
    calib, provenance = None, {}
    if module is not None and any(p in QUANTIZED for _, p in todo):
        from ..calibration.weight_only import WEIGHT_ONLY, check_block
        from ..data.tokens import load_data
        from ..pipeline.main_job import token_hash

        # checked before any export; models that read the ViT's attention / keys load them too
        calib, source = load_data(calib_data, "calib", attention=bool(getattr(module, "token_fields", ())))
        provenance = {"calibration_data": source, "calibration_sha256": token_hash(calib),
                      "calibration_method": calib_method}
        if any(p in WEIGHT_ONLY for _, p in todo):
            provenance["weight_only"] = {"method": "awq", "int4_block": check_block("int4", int4_block)}
    sources = _onnx_sources(model, todo, out_dir, module, calib, calib_method, int4_block) if todo else {}
    _check_sources(sources, shapes, batch, grid)
    results = [{**r, "status": "refused"} for r in refused]
    # Engine builds are independent: the executor runs them (a process pool, or Ray tasks) before the bundles.
    jobs = [(t, p, BuildJob(str(sources[(t.attention, p)]), t.name, p, profiles=shapes,
                            plugin_lib=str(plugin_lib) if plugin_lib else None, batch=batch, grid=grid, name=name,
                            provenance=provenance if p in QUANTIZED else None))
            for t, p in todo if t.backend == "tensorrt_rtx"]
    built = run_builds([j for _, _, j in jobs], out_dir, executor, n_jobs, ray_address)
    for (t, p, _), r in zip(jobs, built):
        results.append({"target": t.name, "precision": p, "status": f"engine ({r['cache']})",
                        "path": r["engine_path"], "bytes": r["engine_bytes"], "seconds": r["build_seconds"],
                        "layers": r["layer_summary"]["layers"]})
        if epcontext:
            from ..backend.trt.epcontext import write_epcontext

            ctx = write_epcontext(r, out_dir)
            results[-1].update(status=f"engine ({r['cache']}) + ctx.onnx (embed_mode {ctx['embed_mode']})",
                               epcontext=str(out_dir / "engines" / ctx["path"]))
    for t, p in todo:
        onnx_path = sources[(t.attention, p)]
        extra = provenance if p in QUANTIZED else None
        if t.backend != "tensorrt_rtx":
            r = write_bundle(onnx_path, t, p, out_dir, profiles=shapes, batch=batch, grid=grid, name=name,
                             provenance=extra)
            results.append({"target": t.name, "precision": p, "status": "bundle", "path": r["bundle_path"],
                            "reason": r["reason"]})
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ntc-export build {model.name} -> {out_dir / 'engines' / 'manifest.json'}")
    for column in ("target", "precision", "status", "artifact", "bytes", "build s", "layers"):
        table.add_column(column)
    for r in results:
        table.add_row(r["target"], r["precision"], r["status"], r.get("path") or r.get("reason", ""),
                      str(r.get("bytes", "")), str(r.get("seconds", "")), str(r.get("layers", "")))
    Console().print(table)
