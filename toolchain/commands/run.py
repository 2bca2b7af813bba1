"""`ntc-export run MODEL.pt ...` (also `ntc-export MODEL.pt ...`): the main job."""

from pathlib import Path

import click

from .options import attention_option, precision_option, quiet_option


@click.command("run")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Held-out tokens (.npz from `ntc-export tokens`); default: built-in digits validation split.")
@precision_option()
@attention_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("ntc-out"),
              show_default=True, help="Output (and cache) directory.")
@quiet_option
def command(models, data, precisions, attention, out_dir, quiet):
    """Run the whole job for MODEL(s): tokens -> export -> validate -> report.

    Stages whose inputs are unchanged are skipped. Exits 1 when a fidelity threshold is missed.
    """
    from ..main_job import run_main_job

    report = run_main_job(list(models), out_dir, data=data, precisions=precisions, attention=attention, quiet=quiet)
    if not report["pass"]:
        raise click.exceptions.Exit(1)
