"""`ntc-export demo`: the main job on every zoo model."""

from pathlib import Path

import click

from ..util.errors import NtcError
from ..util.paths import ZOO_DIR
from .options import quiet_option


@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("ntc-out/demo"),
              show_default=True, help="Output (and cache) directory.")
@click.option("--max-samples", type=click.IntRange(min=1), default=64, show_default=True,
              help="Held-out token maps of the photo corpus's validation split to validate on.")
@click.option("--max-calib-samples", type=click.IntRange(min=1), default=64, show_default=True,
              help="Token maps of the photo corpus's calibration split to calibrate int8/fp8 on (evenly spaced, "
                   "so every photograph contributes).")
@quiet_option
def command(out_dir, max_samples, max_calib_samples, quiet):
    """Run the main job on every model of the built-in zoo (models/zoo/*.pt) with the built-in held-out tokens:
    export, int8/fp8 calibration on the photo corpus's calibration split, validation against PyTorch of every
    precision, engines for the default RTX targets, Jetson bundles, and the report with its decision table."""
    from ..pipeline.main_job import run_main_job

    zoo = sorted(ZOO_DIR.glob("*.pt"))
    if not zoo:
        raise NtcError(f"no zoo checkpoints in {ZOO_DIR}; build them with scripts/build_zoo.py")
    report = run_main_job(zoo, out_dir, max_samples=max_samples, max_calib_samples=max_calib_samples, quiet=quiet,
                          command=f"ntc-export demo --max-samples {max_samples} --max-calib-samples {max_calib_samples}")
    if not report["pass"]:
        raise click.exceptions.Exit(1)
