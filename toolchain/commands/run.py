"""`ntc-export run MODEL.pt ...` (also `ntc-export MODEL.pt ...`): the main job."""

from pathlib import Path

import click

from ..backend.trt.targets import PRECISIONS, TARGETS
from ..ops.window_attention.lowering import MODES as ATTENTION_MODES
from ..pipeline.executor import EXECUTORS
from .options import CALIB_METHODS, exporter_option, int4_block_option, main_grid_option, quiet_option


@click.command("run")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Held-out tokens (.npz from `ntc-export tokens`); default: the photo corpus's validation split.")
@click.option("--calib-data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Calibration tokens for int8/fp8; default: the photo corpus's calibration split (other "
                   "photographs than the validation split).")
@click.option("--precision", "precisions", multiple=True, type=click.Choice(PRECISIONS),
              help="Precision(s) to produce and validate; repeat the flag. int8/fp8 (Q/DQ) and int4/nvfp4 "
                   "(weight-only, AWQ) add a calibration stage. "
                   "Default: fp32, fp16, int8, fp8 (int8/fp8 left out, and reported, when the default "
                   "calibration tokens cannot feed a model and --calib-data is not given).")
@click.option("--target", "targets", multiple=True, type=click.Choice(list(TARGETS)),
              help="Target profile(s) to build engines (RTX) or deploy bundles (Jetson) for; repeat the flag. "
                   "Default: rtx-ampere, rtx-ada, rtx-blackwell, jetson-orin, skipping pairs a target cannot "
                   "build (listed in the report).")
@click.option("--no-build", is_flag=True, help="Stop after validation: no engines or bundles.")
@main_grid_option
@click.option("--attention", type=click.Choice(ATTENTION_MODES), default=None,
              help="Force one window-attention lowering for every graph (default: per target profile; "
                   "`decomposed` for validation).")
@exporter_option
@click.option("--calib-method", type=click.Choice(CALIB_METHODS), default="mse", show_default=True,
              help="INT8/FP8 calibration method (mse: best or within 1 dB of the best on every zoo model, and fast).")
@int4_block_option
@click.option("--target-cosine", type=click.FloatRange(0.0, 1.0, min_open=True), default=None,
              help="Keep the most sensitive layers of each quantized graph in high precision until its output cosine "
                   "on the calibration tokens meets this (the report lists them).")
@click.option("--min-cosine", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.99, show_default=True,
              help="Payload decision: the token cosine a compressor's decoded tokens must reach; the report names "
                   "the smallest payload that does, per target, and the reference routes it beats or loses to.")
@click.option("--decode-budget-ms", type=click.FloatRange(0.0, min_open=True), default=None,
              help="Payload decision: the most a decode may cost per image on a target, read against the target's "
                   "roofline lower bound (FLOPs and bytes moved over its peak throughput and bandwidth).")
@click.option("--pixel-route", "pixel_routes", multiple=True, metavar="FORMAT:QUALITY",
              help="Picture routes the codecs are read against (jpeg, webp or avif at a quality; repeat the flag; "
                   "'none' for no picture rows). Default: avif:30 avif:50 avif:70 jpeg:95.")
@click.option("--max-samples", type=click.IntRange(min=1), default=None,
              help="Validate on the first N held-out samples only (default: all).")
@click.option("--max-calib-samples", type=click.IntRange(min=1), default=None,
              help="Calibrate int8/fp8 on N calibration samples, evenly spaced (default: all).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("ntc-out"),
              show_default=True, help="Output (and cache) directory.")
@click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True,
              help="Where engine builds run: a local process pool, or Ray tasks (see `ntc-export build`).")
@click.option("--jobs", "n_jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Engine builds of a model at once.")
@click.option("--ray-address", default=None, help="Ray cluster for --executor ray; default: a local one.")
@click.option("--golden", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="For an ONNX file as MODEL: expected outputs (.npz, one array per output name, in the validation "
                   "data's order) to validate against instead of the file's own ONNX Runtime fp32 outputs.")
@click.option("--triton-repo", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="At the end, write a Triton model repository of the built engines here (`ntc-export triton`).")
@click.option("--epcontext", is_flag=True,
              help="Write an ONNX Runtime EPContext model (<model>.<precision>.ctx.onnx) beside each TensorRT-RTX "
                   "engine, for apps running the TensorRT-RTX execution provider (see `ntc-export build`).")
@quiet_option
def command(models, data, calib_data, precisions, targets, no_build, grid, attention, exporter, calib_method,
            int4_block, target_cosine, min_cosine, decode_budget_ms, pixel_routes, max_samples, max_calib_samples,
            out_dir, executor, n_jobs, ray_address, golden, triton_repo, epcontext, quiet):
    """Run the whole job for MODEL(s): tokens -> export -> calibrate -> validate -> engines -> report.

    MODEL: our checkpoint (.pt), a torch.export program (.pt2), an ONNX file (export skipped; validated against
    its own ONNX Runtime fp32 outputs, or --golden), or a Hugging Face checkpoint folder (converted).

    Stages whose inputs are unchanged are skipped. Exits 1 when a fidelity threshold is missed, 2 on bad input.
    """
    from ..pipeline.main_job import run_main_job

    chosen = () if no_build else (tuple(targets) or None)
    report = run_main_job(list(models), out_dir, data=data, calib_data=calib_data, precisions=precisions or None,
                          targets=chosen, attention=attention, calib_method=calib_method, max_samples=max_samples,
                          max_calib_samples=max_calib_samples, quiet=quiet, target_cosine=target_cosine,
                          executor=(executor, n_jobs, ray_address),
                          golden=golden, exporter=exporter, grid=grid, min_cosine=min_cosine,
                          decode_budget_ms=decode_budget_ms,
                          pixel_routes=(() if pixel_routes == ("none",) else pixel_routes) or None,
                          epcontext=epcontext, int4_block=int4_block)
    if triton_repo is not None:
        from ..serving.repository import write_repository

        write_repository(out_dir, triton_repo)
        click.echo(f"Triton repository: {triton_repo} (launch lines in its README.md)", err=True)
    if not report["pass"]:
        raise click.exceptions.Exit(1)
