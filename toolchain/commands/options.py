"""Options and loaders shared by several subcommands."""

import click

from ..backend.onnx.export import EXPORTERS
from ..calibration.calibrators import METHODS
from ..ops.window_attention.lowering import MODES as ATTENTION_MODES

CALIB_METHODS = (*METHODS["int8"], "auto")  # every calibrator, and the per-tensor choice among them

attention_option = click.option(
    "--attention", type=click.Choice(ATTENTION_MODES), default="decomposed", show_default=True,
    help="How window attention is lowered: ntc::WindowAttention plugin node, native ONNX Attention (opset 23), "
         "or MatMul-Softmax-MatMul.")
exporter_option = click.option(
    "--exporter", type=click.Choice(EXPORTERS), default="dynamo", show_default=True,
    help="ONNX exporter: torch.export-based, or the legacy TorchScript one (graphs that must take token grids the "
         "torch.export graph does not: its metadata ntc.export.token_grid lists the sides it takes).")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress output.")


def precision_option(default=("fp32", "fp16"), choices=("fp32", "fp16")):
    return click.option("--precision", "precisions", multiple=True, type=click.Choice(choices),
                        default=default, show_default=True, help="Precision(s) to produce; repeat the flag.")


def load_compressor(model):
    """The checkpoint at `model`, when it is a token compressor; a one-line error otherwise."""
    from ..models import load
    from ..util.errors import NtcError

    module = load(model)
    if not module.is_compressor:
        raise NtcError(f"{model} ({module.arch}) is not a token compressor")
    return module
