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
from ..evaluate.validate import run_batched
from ..util.errors import NtcError
from .api import _save_model
from .qdq import find_layers, node_names


def has_weight_layers(onnx_path) -> bool:
    """Whether the graph has a MatMul/Gemm/Conv with constant weights for Q/DQ (`calibrate`); token selections
    have none (their MatMuls are one-hot selections of activations, which Q/DQ would make inexact)."""
    return bool(find_layers(node_names(onnx.load(str(onnx_path)))))


def calibrate_interface(onnx_fp32_path, feeds: dict[str, np.ndarray], streams, out_dir,
                        holdout: dict[str, np.ndarray] | None = None) -> dict:
    """Write `<out_dir>/model.int8.onnx`, int8 at the `streams` (graph input and output names) with scales from
    `feeds` and the fp32 graph's outputs on them; returns {"scales": {tensor: {amax, scale}}, "fidelity": {output:
    cosine of the int8 graph against the fp32 one}, on `holdout` (default: the calibration feeds)}."""
    path = Path(onnx_fp32_path)
    runner = OrtRunner(path)
    names = set(runner.input_names) | set(runner.output_names)
    if missing := sorted(set(streams) - names):
        raise NtcError(f"{path}: no input or output named {', '.join(missing)} to carry as int8")
    if missing := sorted(set(runner.input_names) - set(feeds)):
        raise NtcError(f"calibration feeds lack input(s) {', '.join(missing)} of {path.name}")
    feeds = {k: feeds[k] for k in runner.input_names}
    outputs = run_batched(runner, feeds)
    values = {**feeds, **outputs}
    amaxes = {name: float(np.abs(values[name]).max()) for name in streams}
    interface = {name: {"amax": amax, "scale": scale_for(amax)} for name, amax in amaxes.items()}
    model = int8_interface(onnx.load(str(path)), {k: v["scale"] for k, v in interface.items()})
    model.doc_string = f"ntc-export int8 interface (max calibration) of {path.name}"
    out_path = Path(out_dir) / "model.int8.onnx"
    _save_model(model, out_path)
    held = feeds if holdout is None else {k: holdout[k] for k in runner.input_names}
    reference = outputs if holdout is None else run_batched(runner, held)
    got = run_batched(OrtRunner(out_path), held)
    return {"scales": interface, "fidelity": {k: fidelity(reference[k], got[k])["cosine"] for k in streams
                                              if k in reference}}
