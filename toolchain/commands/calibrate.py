"""`ntc-export calibrate`: INT8/FP8 calibration into an explicit Q/DQ ONNX (thin over ntc_export.calibration)."""

from pathlib import Path

import click

from ..util.errors import NtcError


def _fp32_onnx(model_path: Path, out_dir: Path) -> Path:
    """The fp32 ONNX to calibrate: the file itself, or a decomposed export of a checkpoint."""
    if model_path.suffix == ".onnx":
        return model_path
    if model_path.suffix != ".pt":
        raise NtcError(f"{model_path}: expected a .pt checkpoint or an .onnx model")
    from ..backend.onnx.export import export_model
    from ..models import load

    return export_model(load(model_path), out_dir, precisions=("fp32",), attention="decomposed")["fp32"]


@click.command("calibrate")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "data", required=True, type=click.Path(path_type=Path),
              help="Calibration tokens (.npz with patch_tokens [N, tokens, D]; at least 16 samples).")
@click.option("--precision", type=click.Choice(["int8", "fp8"]), default="int8", show_default=True)
@click.option("--method", type=click.Choice(["minmax", "percentile", "entropy", "mse", "auto"]), default="auto",
              show_default=True, help="Activation calibrator; auto picks per tensor by measured output error.")
@click.option("--target-cosine", type=float, default=None,
              help="Keep the most sensitive layers in high precision until the output cosine meets this.")
@click.option("--holdout", type=click.Path(path_type=Path), default=None,
              help="Held-out tokens (.npz) for sensitivity and fidelity (default: the calibration tokens).")
@click.option("--plugin-onnx", type=click.Path(path_type=Path), default=None,
              help="Plugin graph (ntc:: nodes) to receive the decomposed graph's scales by tensor name.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("build"), show_default=True)
def command(model, data, precision, method, target_cosine, holdout, plugin_onnx, out_dir):
    """Calibrate MODEL (.pt or fp32 .onnx) on real tokens; writes OUT/model.<precision>.onnx and
    OUT/calibration/<precision>.json."""
    from ..calibration import calibrate

    result = calibrate(_fp32_onnx(model, out_dir), data, precision, method, out_dir, target_cosine=target_cosine,
                       holdout=holdout, plugin_onnx=plugin_onnx, log=lambda text: click.echo(text, err=True))
    for name, fid in result.fidelity.items():
        click.echo(f"{name}: cosine {fid['cosine']:.6f}, SNR {fid['snr_db']:.2f} dB vs fp32 ({result.evaluated_on})")
    methods = sorted({a["method"] for t, a in result.activations.items()})
    click.echo(f"{len(result.quantized_layers)} layers in {precision} ({', '.join(methods)}), "
               f"{len(result.kept_high_precision)} kept in high precision")
    click.echo(f"wrote {result.model_path}" + (f" and {result.plugin_model_path}" if result.plugin_model_path else ""))
