"""`calibrate_interface`: fp32 ONNX of a weightless token selection + real feeds -> its int8-interface graph.

The token streams (the input tokens, the output tokens) get per-tensor int8 scales from their largest magnitude on
the calibration feeds (max calibration: a percentile clips the ViT's few outlier channels, which a selection and a
mean carry through unchanged); the graph is `backend.onnx.int8_io.int8_interface` of the fp32 one.
"""

from pathlib import Path

import numpy as np
import onnx

from ..backend.onnx.int8_io import int8_interface, scale_for
from ..backend.onnxrt.runner import OrtRunner
from ..evaluate.fidelity import fidelity
from ..evaluate.validate import run_groups
from ..util.errors import NtcError
from .api import _save_model
from ..evaluate.feeds import feed_groups, grouped
from .qdq import find_layers, node_names


def has_weight_layers(onnx_path) -> bool:
    """Whether the graph has a MatMul/Gemm/Conv with constant weights for Q/DQ (`calibrate`); token selections
    have none (their MatMuls are one-hot selections of activations, which Q/DQ would make inexact)."""
    return bool(find_layers(node_names(onnx.load(str(onnx_path)))))


def calibrate_interface(onnx_fp32_path, feeds, streams, out_dir, holdout=None) -> dict:
    """Write `<out_dir>/model.int8.onnx`, int8 at the `streams` (graph input and output names) with scales from
    `feeds` (a feeds dict or FeedGroups) and the fp32 graph's outputs on them; returns {"scales": {tensor: {amax,
    scale}}, "fidelity": {output: cosine of the int8 graph against the fp32 one}, on `holdout` (default: the
    calibration feeds)}."""
    path = Path(onnx_fp32_path)
    runner = OrtRunner(path)
    names = set(runner.input_names) | set(runner.output_names)
    if missing := sorted(set(streams) - names):
        raise NtcError(f"{path}: no input or output named {', '.join(missing)} to carry as int8")
    if missing := sorted(set(runner.input_names) - set(feed_groups(feeds)[0][1])):
        raise NtcError(f"calibration feeds lack input(s) {', '.join(missing)} of {path.name}")
    feeds = _inputs_of(feeds, runner.input_names)
    outputs = run_groups(runner, feeds)
    inputs = [f for _, f in feed_groups(feeds)]
    amaxes = {name: float(max(np.abs(f[name]).max() for f in inputs)) if name in inputs[0]
              else float(np.abs(outputs[name]).max()) for name in streams}
    interface = {name: {"amax": amax, "scale": scale_for(amax)} for name, amax in amaxes.items()}
    model = int8_interface(onnx.load(str(path)), {k: v["scale"] for k, v in interface.items()})
    model.doc_string = f"ntc-export int8 interface (max calibration) of {path.name}"
    out_path = Path(out_dir) / "model.int8.onnx"
    _save_model(model, out_path)
    held = feeds if holdout is None else _inputs_of(holdout, runner.input_names)
    reference = outputs if holdout is None else run_groups(runner, held)
    got = run_groups(OrtRunner(out_path), held)
    return {"scales": interface, "fidelity": {k: fidelity(reference[k], got[k])["cosine"] for k in streams
                                              if k in reference}}


def _inputs_of(feeds, names):
    """Only the graph's inputs of a feeds dict or of each FeedGroups group."""
    return grouped([(idx, {k: f[k] for k in names}) for idx, f in feed_groups(feeds)])
