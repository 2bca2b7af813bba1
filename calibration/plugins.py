"""Carry scales from the decomposed graph (where statistics are taken) to the plugin graph (ntc:: nodes).

Rule: tensors map by name. The plugin graph is the decomposed graph with subgraphs replaced by ntc:: nodes whose
inputs and outputs keep the names of the replaced subgraph's boundary tensors; tensors inside a replaced subgraph
have no counterpart and their scales are dropped. A layer of the plugin graph is quantized when both its activation
tensor and its weight initializer were quantized in the decomposed model; plugin inputs/outputs stay in their
contract's float type, and their carried scales are recorded in the model metadata (`ntc.calibration.plugin_io`)
for plugins that run low-precision I/O.
"""

import json

import onnx

from ..ops.domain import DOMAIN
from .qdq import find_layers, insert_qdq, node_names

METADATA_KEY = "ntc.calibration.plugin_io"


def plugin_boundaries(model: onnx.ModelProto) -> list[str]:
    """Input and output tensors of ntc:: nodes (constants excluded), in graph order."""
    consts = {i.name for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.domain == DOMAIN:
            for name in list(node.input) + list(node.output):
                if name and name not in consts and name not in out:
                    out.append(name)
    return out


def graph_tensors(model: onnx.ModelProto) -> set[str]:
    return {i.name for i in model.graph.input} | {o for n in model.graph.node for o in n.output}


def non_float_tensors(model: onnx.ModelProto) -> set[str]:
    """Tensors of a known type other than float32 (after shape inference): they get no activation statistics
    (the INT32 BC blocks feeding ntc::BcDecode are data, not activations)."""
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is a refinement; declared types still count
        pass
    graph = model.graph
    return {v.name for v in [*graph.input, *graph.value_info, *graph.output]
            if v.type.tensor_type.elem_type not in (onnx.TensorProto.UNDEFINED, onnx.TensorProto.FLOAT)}


def apply_to_plugin_graph(plugin_model: onnx.ModelProto, activations: dict[str, dict], weights: dict[str, dict],
                          precision: str):
    """(Q/DQ plugin model, report). `activations`/`weights` are the cache's tables (tensor -> {"scale", ...})."""
    import numpy as np

    plugin_model = node_names(onnx.ModelProto.FromString(plugin_model.SerializeToString()))
    tensors = graph_tensors(plugin_model)
    layers = find_layers(plugin_model)
    quantized = [l for l in layers if l.activation in activations and l.weight in weights]
    high = [l.node for l in layers if l not in quantized]
    boundaries = plugin_boundaries(plugin_model)
    plugin_io = {t: activations[t]["scale"] for t in boundaries if t in activations}
    report = {
        "rule": "tensor names: plugin-node inputs/outputs keep the decomposed subgraph's boundary names",
        "quantized_layers": [l.node for l in quantized],
        "high_precision_layers": high,
        "plugin_io_scales": plugin_io,
        "plugin_io_missing": [t for t in boundaries if t not in activations],
        "dropped_internal": sorted(t for t in activations if t not in tensors),
    }
    act_scales = {l.activation: activations[l.activation]["scale"] for l in quantized}
    w_scales = {l.weight: np.asarray(weights[l.weight]["scales"], np.float32) for l in quantized}
    out = insert_qdq(plugin_model, quantized, act_scales, w_scales, precision)
    entry = out.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(plugin_io)
    return out, report
