"""`ntc-export rd MODEL... --data T.npz --out rd.json [--plot rd.png]`: rate-distortion of compressors beside the
PCA reference line; for token-count reducers and projectors, the token-reduction table (token ratio, saliency r,
task probe accuracy, baselines at the same token counts, and with `--adaptive` the adaptive budget policy)."""

from pathlib import Path

import click

from .options import load_compressor
from .rd_reduction import reduction_command, reduction_options


@click.command("rd")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Held-out token file from `ntc-export tokens` (the tokens measured). Required for compressors; "
                   "reducers/projectors default to the photo corpus's val split with the ViT's attention.")
@click.option("--fit", "fit_data", type=click.Path(path_type=Path), default=None,
              help="Training token file the PCA references and the linear probe are fitted on (its labels, if any, "
                   "train the probe). Default: the photo corpus's train split (`ntc-export tokens --builtin photos "
                   "--split train`), disjoint from its val split.")
@click.option("--pca-rate", "pca_rates", type=float, multiple=True,
              help="Rates (x smaller than fp16 tokens) of the PCA reference rows; repeat the flag. Default: each "
                   "model's measured rate.")
@click.option("--pca-cell", type=click.Choice(["1", "2", "4"]), default="1", show_default=True,
              help="PCA reference on c x c token cells instead of single tokens (the fair line for compressors "
                   "that code neighbouring tokens together, such as bc_autoencoder's 2x2 cells from 8x).")
@click.option("--no-saliency", is_flag=True, help="Skip the saliency-head correlation (it needs the CLS token).")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="JSON: one row per model, the original tokens and each PCA reference.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG of token cosine (and probe accuracy) against bytes per image, one line per family "
                   "(reducers/projectors: saliency r and probe accuracy against token ratio).")
@reduction_options
def command(models, data, fit_data, pca_rates, pca_cell, no_saliency, out, plot, **reduction):
    """Measure every compressor on the same tokens: bytes per image (mean length of its real payloads), rate vs fp16
    tokens, mean per-token cosine, rel L2, SNR, saliency-map r and linear-probe accuracy (where the data has labels),
    beside PCA + per-component uniform quantization fitted on training tokens at the same rates."""
    from ..data.tokens import builtin_tokens, load_tokens
    from ..evaluate.rate_distortion import rate_distortion
    from ..models import load
    from ..report.fmt import num
    from ..util.atomic import write_bytes, write_json
    from ..util.errors import NtcError

    loaded = {Path(m).stem: load(m) for m in models}  # every input checked before any work
    if len(loaded) != len(models):
        raise NtcError("two models share a file name; name each row differently")
    if not any(m.is_compressor for m in loaded.values()):
        return reduction_command(loaded, data, fit_data, out, plot, **reduction)
    modules = {name: load_compressor(path) for name, path in zip(loaded, models)}
    if data is None:
        raise NtcError("rd of compressors needs --data (a held-out token file)")
    tokens = load_tokens(data)
    train = load_tokens(fit_data) if fit_data else builtin_tokens("photos", 224, split="train")
    fit_source = str(fit_data) if fit_data else "builtin:photos/train@224"
    rows = rate_distortion(modules, tokens, train, list(pca_rates) or None, with_saliency=not no_saliency,
                           pca_cell=int(pca_cell))
    write_json(out, {"data": str(data), "fit_data": fit_source, "samples": len(tokens), "rows": rows})
    click.echo(f"{'model':>24} {'family':>15} {'B/image':>9} {'rate':>6} {'cosine':>7} {'SNR dB':>7} "
               f"{'sal. r':>6} {'probe':>6}")
    for r in rows:
        click.echo(f"{r['model']:>24} {r['family']:>15} {r['bytes_per_image']:9.0f} {r['rate']:6.2f} "
                   f"{r['cosine']:7.4f} {r['snr_db']:7.2f} {num(r['saliency_r'], '6.3f')} "
                   f"{num(r['probe_accuracy'], '6.3f')}")
    if plot is not None:
        from ..report.plots import rate_distortion_plot

        points = [{**r, "series": r["family"], "task_metric": r["probe_accuracy"]} for r in rows
                  if r["family"] != "original"]
        write_bytes(plot, rate_distortion_plot(points)[0])
    click.echo(f"wrote {out}" + (f" and {plot}" if plot else ""))
