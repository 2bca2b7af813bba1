"""`ntc-export calibrate`: INT8/FP8 calibration into an explicit Q/DQ ONNX, or weight-only INT4 (AWQ) / NVFP4 graphs
(thin over ntc_export.calibration)."""

from pathlib import Path

import click

from ..util.errors import NtcError
from .options import CALIB_METHODS, int4_block_option


def _sources(model_path: Path, data: Path, holdout: Path | None, out_dir: Path):
    """(fp32 ONNX, calibration data, held-out data, int8 token streams): an ONNX with token files as they are, or a
    checkpoint's decomposed export with the token files turned into that model's feeds (tokens, or BC blocks for
    compressors; one feeds dict per grid for files of several grids) and the token streams a weightless model
    carries as int8 at its interface."""
    if model_path.suffix == ".onnx":
        return model_path, data, holdout, ()
    if model_path.suffix != ".pt":
        raise NtcError(f"{model_path}: expected a .pt checkpoint or an .onnx model")
    from ..backend.onnx.export import export_model
    from ..models import load

    module = load(model_path)
    calib = _feeds(module, data)  # every grid checked before the export runs
    held = _feeds(module, holdout) if holdout is not None else None
    onnx_path = export_model(module, out_dir, precisions=("fp32",), attention="decomposed")
    return onnx_path["fp32"], calib, held, getattr(module, "int8_streams", ())


def _feeds(module, path: Path):
    """The model's feeds from a token file (its grids, and the ViT's fields for models that read them) or from the
    decoded tokens `ntc-export decompress` wrote (one feeds dict per grid)."""
    from ..calibration.data import token_arrays
    from ..evaluate.feeds import grouped
    from ..codec.payload import is_decoded_file
    from ..data.tokens import load_tokens
    from ..evaluate.validate import check_tokens_fit, model_feeds

    if not is_decoded_file(path):
        return model_feeds(module, load_tokens(path))
    groups = token_arrays(path, rank=4)
    for _, t in groups:  # every grid checked before any is prepared
        check_tokens_fit(module, t[:1])
    return grouped([(idx, model_feeds(module, t)) for idx, t in groups])


def _interface(onnx_path: Path, calib, held, streams, precision: str, out_dir: Path) -> None:
    """A token selection's int8 graph: int8 token streams at its interface, fp32 inside."""
    from ..calibration.interface import calibrate_interface

    if precision != "int8":
        raise NtcError(f"{onnx_path.name} has no MatMul/Gemm/Conv with constant weights: its int8 graph carries int8 "
                       f"tokens at the interface ({', '.join(streams)}); there is no {precision} one")
    result = calibrate_interface(onnx_path, calib, streams, out_dir, holdout=held)
    for name, cosine in result["fidelity"].items():
        click.echo(f"{name}: cosine {cosine:.6f} vs fp32 ({'held-out' if held is not None else 'calibration'} feeds)")
    click.echo("int8 interface, fp32 inside: " + ", ".join(f"{t} scale {v['scale']:.6g} (amax {v['amax']:.4g})"
                                                           for t, v in result["scales"].items()))
    click.echo(f"wrote {Path(out_dir) / 'model.int8.onnx'}")


@click.command("calibrate")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "data", required=True, type=click.Path(path_type=Path),
              help="Calibration tokens (.npz from `ntc-export tokens`, any grid or several, or decoded patch_tokens; "
                   "at least 16 samples).")
@click.option("--precision", type=click.Choice(["int8", "fp8", "int4", "nvfp4"]), default="int8",
              show_default=True,
              help="int8/fp8: Q/DQ on activations and weights; int4 (AWQ) / nvfp4: weight-only, fp16 activations.")
@int4_block_option
@click.option("--method", type=click.Choice(CALIB_METHODS), default="auto",
              show_default=True, help="Activation calibrator; auto picks per tensor by measured output error.")
@click.option("--target-cosine", type=float, default=None,
              help="Keep the most sensitive layers in high precision until the output cosine meets this.")
@click.option("--holdout", type=click.Path(path_type=Path), default=None,
              help="Held-out tokens (.npz) for sensitivity and fidelity (default: the calibration tokens).")
@click.option("--plugin-onnx", type=click.Path(path_type=Path), default=None,
              help="Plugin graph (ntc:: nodes) to receive the decomposed graph's scales by tensor name.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("build"), show_default=True)
def command(model, data, precision, int4_block, method, target_cosine, holdout, plugin_onnx, out_dir):
    """Calibrate MODEL (.pt or fp32 .onnx) on real tokens; writes OUT/model.<precision>.onnx and
    OUT/calibration/<precision>.json. A token reducer's checkpoint (no weights: ToMe, VisionZip) gets an int8
    graph with int8 tokens at its interface and fp32 inside, its scales from the largest magnitudes."""
    from ..calibration import calibrate
    from ..calibration.interface import has_weight_layers

    onnx_path, calib, held, streams = _sources(model, data, holdout, out_dir)
    if streams and not has_weight_layers(onnx_path):
        return _interface(onnx_path, calib, held, streams, precision, out_dir)
    result = calibrate(onnx_path, calib, precision, method, out_dir, target_cosine=target_cosine,
                       holdout=held, plugin_onnx=plugin_onnx, log=lambda text: click.echo(text, err=True),
                       block_size=int4_block)
    for name, fid in result.fidelity.items():
        click.echo(f"{name}: cosine {fid['cosine']:.6f}, SNR {fid['snr_db']:.2f} dB vs fp32 ({result.evaluated_on})")
    if result.weight_bytes:
        click.echo(f"fidelity by {result.fidelity_runtime}")
        click.echo("weight bytes: " + ", ".join(f"{k} {v}" for k, v in result.weight_bytes.items()))
    methods = sorted({a["method"] for t, a in result.activations.items()}) or [result.method]
    click.echo(f"{len(result.quantized_layers)} layers in {precision} ({', '.join(methods)}), "
               f"{len(result.kept_high_precision)} kept in high precision")
    click.echo(f"wrote {result.model_path}" + (f" and {result.plugin_model_path}" if result.plugin_model_path else ""))
