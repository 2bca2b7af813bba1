"""`ntc-export validate MODEL.pt --data TOKENS.npz --out DIR`."""

from pathlib import Path

import click

from .options import attention_option, exporter_option, precision_option


@click.command("validate")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Held-out tokens (.npz from `ntc-export tokens`; any grid, or images on several grids).")
@precision_option()
@attention_option
@exporter_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for the ONNX files and validation.json.")
def command(model, data, precisions, attention, exporter, out_dir):
    """Run PyTorch (golden) and ONNX Runtime on held-out tokens; write DIR/validation.json.

    Exits 1 when a threshold is missed (fp32: rel L2 <= 1e-5; fp16: cosine >= 0.9995).
    """
    from ..backend.onnx.export import export_model
    from ..data.tokens import load_tokens
    from ..evaluate.validate import failures, model_feeds, validate_onnx
    from ..models import load
    from ..util.atomic import write_json

    module = load(model)
    tokens = load_tokens(data)
    feeds = model_feeds(module, tokens)  # every grid checked before the export (+ the reducers' attention, keys)
    paths = export_model(module, out_dir, precisions, attention=attention, exporter=exporter)
    records = validate_onnx(Path(model).stem, module, paths, tokens, tokens.labels, feeds=feeds)
    write_json(Path(out_dir) / "validation.json", records)
    for r in records:
        click.echo(f"{r['precision']:5} {r['output']:10} cosine {r['cosine']:.7f} rel_l2 {r['rel_l2']:.2e} "
                   f"{'pass' if r['pass'] else 'FAIL'}")
    if failures(records):
        raise click.exceptions.Exit(1)
