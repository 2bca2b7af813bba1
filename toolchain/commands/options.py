"""Options and loaders shared by several subcommands."""

import click

from ..backend.onnx.export import EXPORTERS
from ..backend.trt.profiles import DEFAULT_GRID, GRID_SYNTAX, format_grid, parse_batch, parse_grid
from ..calibration.calibrators import METHODS
from ..ops.window_attention.lowering import MODES as ATTENTION_MODES

CALIB_METHODS = (*METHODS["int8"], "auto")  # every calibrator, and the per-tensor choice among them

attention_option = click.option(
    "--attention", type=click.Choice(ATTENTION_MODES), default="decomposed", show_default=True,
    help="How window attention is lowered: ntc::WindowAttention plugin node, native ONNX Attention (opset 23), "
         "or MatMul-Softmax-MatMul.")
exporter_option = click.option(
    "--exporter", type=click.Choice(EXPORTERS), default="dynamo", show_default=True,
    help="ONNX exporter: torch.export-based (separate dynamic height and width: every grid), or the legacy "
         "TorchScript one.")
# Parsed while the options are read: a bad --grid / --batch is one line (exit 2) before any work.
grid_option = click.option(
    "--grid", default=format_grid(DEFAULT_GRID), show_default=True, callback=lambda ctx, param, v: parse_grid(v),
    help=f"Engine profile of the token grid, {GRID_SYNTAX} (h x w patches each): engines take every grid from min "
         "to max on each axis. The default covers images of 56 to 672 px a side at ViT patch 14, at any aspect ratio "
         "within (e.g. 672x224 px: a 48x16 grid), tuned for 224x224.")
main_grid_option = click.option(
    "--grid", default=None, callback=lambda ctx, param, v: None if v is None else parse_grid(v),
    help=f"Engine profile of the token grid, {GRID_SYNTAX} (h x w patches each); validation data outside it is "
         f"refused. Default: {format_grid(DEFAULT_GRID)} (56 to 672 px a side at ViT patch 14, tuned for 224x224), "
         "widened to admit every grid of the validation data (a native-resolution 16:9 photo: 37x60).")
batch_option = click.option(
    "--batch", default="1,1,8", show_default=True, callback=lambda ctx, param, v: parse_batch(v),
    help="min,opt,max batch of the engine profile.")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress output.")
int4_block_option = click.option(
    "--int4-block", type=int, default=None,
    help="int4: input channels per weight scale (a power of two >= 16; default 128).")


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
