"""`ntc-export demo`: the main job on one zoo model per architecture (every zoo model with --all)."""

import re
from pathlib import Path

import click

from ..util.errors import NtcError
from ..util.paths import ZOO_DIR
from .options import quiet_option


@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("ntc-out/demo"),
              show_default=True, help="Output (and cache) directory.")
@click.option("--max-samples", type=click.IntRange(min=1), default=32, show_default=True,
              help="Held-out square crops of the photo corpus's validation split to validate on (evenly spaced over "
                   "the split: a photograph's crops are consecutive, so the first ones would come from a few "
                   "photographs).")
@click.option("--max-calib-samples", type=click.IntRange(min=1), default=32, show_default=True,
              help="Token maps of the photo corpus's calibration split to calibrate int8/fp8 on (evenly spaced, "
                   "so every photograph contributes).")
@click.option("--native", type=click.IntRange(min=0), default=4, show_default=True,
              help="Photographs of the validation split added whole, at their own aspect ratio (native resolution "
                   "within 280x280 pixels, even sides: non-square grids such as 16x24), beside the square crops; "
                   "0: none.")
@click.option("--all", "every", is_flag=True,
              help="Every zoo checkpoint (every rate of every codec family), not one per architecture.")
@quiet_option
def command(out_dir, max_samples, max_calib_samples, native, every, quiet):
    """Run the main job on one model per architecture of the built-in zoo (models/zoo/*.pt; every checkpoint with
    --all) with the built-in held-out tokens (square crops, plus a few photographs at their own aspect ratio):
    export, int8/fp8 calibration on the photo corpus's calibration split, validation against PyTorch of every
    precision on every grid, engines for the default RTX targets, Jetson bundles, and the report with its decision
    table."""
    from ..pipeline.main_job import run_main_job

    zoo = demo_models(sorted(ZOO_DIR.glob("*.pt")), every)
    if not zoo:
        raise NtcError(f"no zoo checkpoints in {ZOO_DIR}; build them with scripts/build_zoo.py")
    data = demo_data(out_dir, max_samples, native)
    command = f"ntc-export demo --max-samples {max_samples} --max-calib-samples {max_calib_samples} --native {native}"
    report = run_main_job(zoo, out_dir, data=data, max_calib_samples=max_calib_samples, quiet=quiet,
                          command=command + (" --all" if every else ""))
    if not report["pass"]:
        raise click.exceptions.Exit(1)


def demo_data(out_dir: Path, max_samples: int, native: int) -> Path:
    """The demo's validation tokens as a file: `max_samples` square crops of the photo corpus's validation split,
    evenly spaced (a photograph's crops are consecutive, so the first ones would come from a few photographs only),
    then `native` of its photographs whole at their own aspect ratio (a mixed-grid set), with the ViT's CLS
    attention and keys (the reducers read them)."""
    import numpy as np

    from ..data.tokens import builtin_tokens, concat_sets, native_photo_tokens

    square = builtin_tokens("photos", 224, split="val", attention=True)
    square = square.subset(np.unique(np.linspace(0, len(square) - 1, min(max_samples, len(square))).round()))
    # 280x280 pixels: about 400 tokens, enough for every reducer of the zoo (ToMe's 64 keeps need 240)
    sets = [square] + ([native_photo_tokens("val", native, 280 * 280, attention=True)] if native else [])
    path = Path(out_dir) / "demo-data.npz"
    concat_sets(sets).save(path)
    return path


def _rate_then_name(path: Path) -> tuple:
    """Codecs by their rate suffix (hp_x16 before hp_x200, ntc_x16 before ntc_bc5_x32), then digits as numbers."""
    rate = re.search(r"_x(\d+)$", path.stem)
    return int(rate.group(1)) if rate else 0, [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.stem)]


def demo_models(zoo: list[Path], every: bool = False) -> list[Path]:
    """Every checkpoint with `every`, else one per architecture (a codec family's lowest rate), so a first run shows
    every family in minutes."""
    if every:
        return zoo
    from ..models import read_arch

    first = {}
    for path in sorted(zoo, key=_rate_then_name):
        first.setdefault(read_arch(path), path)
    return sorted(first.values())
