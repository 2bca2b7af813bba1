"""`ntc-export rd MODEL... --data T.npz --out rd.json [--plot rd.png]`: rate-distortion of compressors beside the
routes a user could take instead (the PCA line, fp8/int8/int4 token quantization, the pictures coded with
JPEG/WebP/AVIF and re-encoded by the ViT), each with its decode cost; for token-count reducers and projectors, the
token-reduction table (token ratio, saliency r, task probe accuracy, baselines at the same token counts, and with
`--adaptive` the adaptive budget policy)."""

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
@click.option("--quant/--no-quant", default=True, show_default=True,
              help="Token-quantization reference rows: fp8 (E4M3) and int8 with a scale per token, int4 in groups "
                   "of 32 channels, as real packed payloads.")
@click.option("--pixels/--no-pixels", default=True, show_default=True,
              help="Pixel reference rows: each source picture coded with an image codec, decoded and re-encoded by "
                   "the same ViT at the same size (bytes = the coded file's length). The pictures are found from "
                   "the token file's provenance (built-in sets, image files) or in --images.")
@click.option("--pixel-route", "pixel_routes", multiple=True, metavar="FORMAT:QUALITY",
              help="A pixel route (jpeg, webp or avif through Pillow) at a quality 1..100; repeat the flag. "
                   "Default: avif:30 avif:50 avif:70 webp:50 webp:85 jpeg:75 jpeg:95.")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder holding the token file's pictures under their recorded names (else found by provenance).")
@click.option("--cost/--no-cost", default=True, show_default=True,
              help="Decode cost of every row: FLOPs and bytes moved per image (onnx-tool, on the decode graphs; "
                   "pixel rows: the ViT), ONNX Runtime CPU p50 (1 and all threads, batch 1 and 16), and a roofline "
                   "lower bound per target.")
@click.option("--at-cosine", "at_cosines", type=float, multiple=True, default=(0.99,), show_default=True,
              help="Token cosine at which to compare the bytes every line needs (interpolated on its frontier).")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="JSON: one row per model, the original tokens and each reference row.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG of token cosine against bytes per image (and probe accuracy) and against decode FLOPs, one "
                   "line per family and reference (reducers/projectors: saliency r and probe accuracy against "
                   "token ratio).")
@reduction_options
def command(models, data, fit_data, pca_rates, pca_cell, no_saliency, quant, pixels, pixel_routes, images, cost,
            at_cosines, out, plot, **reduction):
    """Measure every compressor on the same tokens: bytes per image (mean length of its real payloads), rate vs fp16
    tokens, mean per-token cosine, rel L2, SNR, saliency-map r and linear-probe accuracy (where the data has labels),
    and the decode cost; beside the same figures for PCA + per-component uniform quantization fitted on training
    tokens at the same rates, for plain token quantization, and for the pictures kept as JPEG/WebP/AVIF and
    re-encoded by the ViT."""
    from ..data.tokens import builtin_tokens, load_tokens
    from ..evaluate import pixel_reference
    from ..evaluate.rate_distortion import DEFAULT_AT, rate_distortion, summary_lines
    from ..models import load
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
    routes = pixel_reference.check_routes(pixel_routes or [f"{c}:{q}" for c, q in pixel_reference.DEFAULT_ROUTES])
    tokens = load_tokens(data)
    train = load_tokens(fit_data) if fit_data else builtin_tokens("photos", 224, split="train")
    fit_source = str(fit_data) if fit_data else "builtin:photos/train@224"
    pictures = None
    if pixels:
        try:
            pictures = pixel_reference.matched_pictures(tokens, images)
        except NtcError as e:  # the other rows still run
            click.echo(f"pixel rows skipped: {e}", err=True)
    rows = rate_distortion(modules, tokens, train, list(pca_rates) or None, with_saliency=not no_saliency,
                           pca_cell=int(pca_cell), quant=quant, pictures=pictures, routes=routes, cost=cost)
    at = list(at_cosines or DEFAULT_AT)
    write_json(out, {"data": Path(data).name, "fit_data": Path(fit_source).name if fit_data else fit_source,
                     "samples": len(tokens), "rows": rows, "bytes_at_cosine": bytes_summary(rows, at)})
    click.echo(table(rows))
    for line in summary_lines(rows, at):
        click.echo(line)
    if plot is not None:
        from ..report.plots import rate_distortion_plot

        write_bytes(plot, rate_distortion_plot(plot_points(rows))[0])
    click.echo(f"wrote {out}" + (f" and {plot}" if plot else ""))


def bytes_summary(rows: list[dict], at: list[float]) -> dict:
    from ..evaluate.rate_distortion import bytes_at

    return {f"{c:g}": bytes_at(rows, c) for c in at}


def plot_points(rows: list[dict]) -> list[dict]:
    """The rows as rate-distortion plot points: one series per family or picture codec."""
    from ..evaluate.rate_distortion import series_of

    return [{**r, "series": series_of(r), "task_metric": r["probe_accuracy"],
             "decode_flops": (r.get("decode_cost") or {}).get("flops")} for r in rows if r["family"] != "original"]


def table(rows: list[dict]) -> str:
    """The rows as a fixed-width table, with the decode cost where measured."""
    from ..report.fmt import num

    head = (f"{'model':>26} {'family':>12} {'B/image':>9} {'rate':>7} {'cosine':>7} {'SNR dB':>7} {'sal. r':>6} "
            f"{'probe':>6} {'MFLOP':>9} {'MB moved':>8} {'p50 ms':>8} {'ada ms≥':>8}")
    lines = [head]
    for r in rows:
        c = r.get("decode_cost") or {}
        p50 = (c.get("p50_ms") or {}).get("t1_b1")
        bound = ((c.get("bound_ms") or {}).get("rtx-ada") or {}).get("bound_ms")
        lines.append(f"{r['model']:>26} {r['family']:>12} {r['bytes_per_image']:9.0f} {r['rate']:7.2f} "
                     f"{r['cosine']:7.4f} {r['snr_db']:7.2f} {num(r['saliency_r'], '6.3f'):>6} "
                     f"{num(r['probe_accuracy'], '6.3f'):>6} {num(_scaled(c.get('flops'), 1e6), '9.1f'):>9} "
                     f"{num(_scaled(c.get('bytes_moved'), 1e6), '8.2f'):>8} {num(p50, '8.2f'):>8} "
                     f"{num(bound, '8.4f'):>8}")
    lines.append("cost: decode per image (pixel rows: picture decode + ViT); p50 = ONNX Runtime CPU, 1 thread, "
                 "batch 1 (all four in the JSON); 'ada ms≥' = roofline lower bound on rtx-ada, not a measurement")
    return "\n".join(lines)


def _scaled(value, unit):
    return None if value is None else value / unit
