"""`ntc-export export MODEL.pt --out DIR`."""

from pathlib import Path

import click

from .options import attention_option, exporter_option, precision_option


@click.command("export")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for model.<precision>.onnx.")
@precision_option()
@attention_option
@exporter_option
def command(model, out_dir, precisions, attention, exporter):
    """Export MODEL.pt to ONNX: model.fp32.onnx and a strongly typed model.fp16.onnx (dynamic batch and grid)."""
    from ..backend.onnx.export import export_model
    from ..models import load

    for precision, path in export_model(load(model), out_dir, precisions, attention=attention,
                                           exporter=exporter).items():
        click.echo(f"{precision}: {path}")
