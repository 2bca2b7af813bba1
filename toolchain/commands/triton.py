"""`ntc-export triton BUILD_DIR --out REPO`: a Triton model repository for every engine built in BUILD_DIR."""

from pathlib import Path

import click


def _checkpoint(text: str) -> tuple[str, Path]:
    path = Path(text)
    if not path.is_file():
        raise click.BadParameter(f"{text}: no such checkpoint")
    return path.stem, path


HOST_STEPS = {"payload_unpack": "payload step (payload -> decoder inputs)",
              "tokens_to_grid": "crop step (decoded tokens -> the payload's grid)"}


@click.command("triton")
@click.argument("build_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Repository folder (replaced as a whole; earlier numbered versions are kept).")
@click.option("--checkpoint", "checkpoints", multiple=True,
              help="A compressor's checkpoint (its payload step checks the model fingerprint); default: the build's "
                   "report.json, then the zoo.")
@click.option("--plugin-lib", default=None,
              help="Path of libntc_trt_plugins.so on the serving machine, for the GPU launch line.")
def command(build_dir, out, checkpoints, plugin_lib):
    """Write a Triton repository: TensorRT plans per compute capability, a CPU twin per model (configs/cpu.pbtxt),
    payload -> tokens -> embeddings ensembles, and a README with the launch lines."""
    from ..serving.repository import write_repository

    index = write_repository(build_dir, out, dict(_checkpoint(c) for c in checkpoints), plugin_lib)
    for name, m in sorted(index["models"].items()):
        what = ", ".join(p["target"] for p in m["plans"]) if "plans" in m else \
            " -> ".join(m["ensemble"]) if "ensemble" in m else HOST_STEPS.get(m.get("host_step"), "host step")
        click.echo(f"{name} (version {m['version']}): {what}")
    for reason in index["skipped"]:
        click.echo(f"skipped: {reason}", err=True)
    click.echo(f"repository: {Path(out).resolve()} (launch lines in README.md)")
