"""Q/DQ placement: find the layers TensorRT runs in low precision and insert explicit QuantizeLinear/DequantizeLinear.

Pattern (what TensorRT fuses into a quantized kernel): an activation Q->DQ and a weight DQ feeding MatMul/Gemm/Conv
whose weight is a constant. Everything else (LayerNorm statistics, Softmax, activation-by-activation MatMuls inside
attention, residual Adds, biases) keeps its float type, so the model is strongly typed with fp32 islands.
"""

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..ops.domain import STANDARD_DOMAINS
from .formats import MIN_OPSET, codes_tensor, scale_of, to_codes, zero_point

QUANTIZED_OPS = ("MatMul", "Gemm", "Conv")


@dataclass(frozen=True)
class Layer:
    """One quantizable node: its activation input tensor and its constant weight (per-channel along `axis`)."""

    node: str
    op_type: str
    activation: str
    weight: str
    axis: int


def constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    out = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            out[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return out


def node_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every unnamed node a unique name (layers are reported and selected by node name)."""
    seen = set()
    for k, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{k}"
        seen.add(node.name)
    return model


def find_layers(model: onnx.ModelProto) -> list[Layer]:
    """Quantizable nodes in graph order; weights must be float constants of the expected rank."""
    graph = model.graph
    consts = constants(graph)
    layers = []
    for node in graph.node:
        if node.op_type not in QUANTIZED_OPS or len(node.input) < 2:
            continue
        act, weight = node.input[0], node.input[1]
        if act in consts or weight not in consts or consts[weight].dtype != np.float32:
            continue
        rank = consts[weight].ndim
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "MatMul" and rank == 2:
            axis = 1  # [K, N]: output channels are columns
        elif node.op_type == "Gemm" and rank == 2 and not attrs.get("transA", 0):
            axis = 0 if attrs.get("transB", 0) else 1
        elif node.op_type == "Conv" and rank >= 3 and attrs.get("group", 1) == 1:
            axis = 0
        else:
            continue
        layers.append(Layer(node.name, node.op_type, act, weight, axis))
    return layers


# ONNX Runtime's x86 int8 kernels without VNNI (AVX2) add 128 to symmetric int8 activations (u8 0..255) and sum
# adjacent-K products pairwise in int16 (vpmaddubsw), which saturates above 32767 = 255 * 128.5: two same-sign
# weight codes next to each other along K must stay within 128 in magnitude together. TensorRT is unaffected.
U8S8_PAIR_MAX = 127.0  # pair bound in units of the scale; with rounding, |c0| + |c1| <= 128


def _k_rows(weight: np.ndarray, axis: int) -> list[np.ndarray]:
    """The weight as [channels, K] in each K order an int8 GEMM may use (Conv: NCHW im2col and NHWC)."""
    w = np.moveaxis(weight, axis, 0)
    rows = [w.reshape(len(w), -1)]
    if w.ndim > 2:  # [Cout, Cin, kh, kw] -> [Cout, kh, kw, Cin]
        rows.append(np.moveaxis(w, 1, -1).reshape(len(w), -1))
    return rows


def same_sign_pair_max(weight: np.ndarray, axis: int) -> np.ndarray:
    """Per output channel: the largest |w[2i]| + |w[2i+1]| over adjacent-K pairs of equal sign."""
    best = np.zeros(weight.shape[axis])
    for rows in _k_rows(np.asarray(weight, np.float64), axis):
        if rows.shape[1] % 2:
            rows = np.pad(rows, ((0, 0), (0, 1)))
        a, b = rows[:, 0::2], rows[:, 1::2]
        best = np.maximum(best, np.where(a * b > 0, np.abs(a) + np.abs(b), 0.0).max(axis=1))
    return best


def weight_scales(weight: np.ndarray, axis: int, precision: str) -> np.ndarray:
    """Per-output-channel symmetric scales from each channel's max |w|; INT8 channels widen where an adjacent-K
    pair of same-sign codes would overflow the 16-bit pair sums of CPU int8 kernels without VNNI (see above)."""
    reduce = tuple(d for d in range(weight.ndim) if d != axis)
    scales = scale_of(np.abs(weight).max(axis=reduce), precision)
    if precision == "int8":
        scales = np.maximum(scales, same_sign_pair_max(weight, axis) / U8S8_PAIR_MAX)
    return scales.astype(np.float32)


def raise_opset(model: onnx.ModelProto, minimum: int) -> None:
    """Raise the default-domain opset to `minimum`; ops from 18 to 23 only gained types, so nodes stay valid."""
    for imp in model.opset_import:
        if imp.domain in STANDARD_DOMAINS:
            imp.version = max(imp.version, minimum)
            return
    model.opset_import.append(helper.make_opsetid("", minimum))


def insert_qdq(model: onnx.ModelProto, layers: list[Layer], act_scales: dict[str, float],
               weight_scale: dict[str, np.ndarray], precision: str) -> onnx.ModelProto:
    """Return a copy of `model` with Q/DQ for `layers`: one activation Q->DQ per tensor (scale from `act_scales`),
    rewired only into the quantized layers; weights stored as int8/FP8 codes behind a per-channel DequantizeLinear."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    consts = constants(graph)
    by_node = {layer.node: layer for layer in layers}
    saturate = {"saturate": 1} if precision == "fp8" else {}
    new_inits, act_qdq, weight_dq = [], {}, {}

    def act_pair(tensor: str) -> list[onnx.NodeProto]:
        base = f"{tensor}_{precision}"
        act_qdq[tensor] = f"{base}_dq"
        new_inits.append(numpy_helper.from_array(np.asarray(act_scales[tensor], np.float32), f"{base}_scale"))
        new_inits.append(zero_point(f"{base}_zp", precision))
        return [helper.make_node("QuantizeLinear", [tensor, f"{base}_scale", f"{base}_zp"], [f"{base}_q"],
                                 name=f"{base}_quantize", **saturate),
                helper.make_node("DequantizeLinear", [f"{base}_q", f"{base}_scale", f"{base}_zp"], [f"{base}_dq"],
                                 name=f"{base}_dequantize")]

    head = []
    for layer in layers:
        if layer.weight in weight_dq:
            continue
        w = consts[layer.weight]
        scales = np.asarray(weight_scale[layer.weight], np.float32)
        codes = to_codes(w, np.expand_dims(scales, tuple(d for d in range(w.ndim) if d != layer.axis)), precision)
        base = f"{layer.weight}_{precision}"
        new_inits += [codes_tensor(f"{base}_codes", codes, precision),
                      numpy_helper.from_array(scales, f"{base}_scale"),
                      zero_point(f"{base}_zp", precision, scales.shape)]
        head.append(helper.make_node("DequantizeLinear", [f"{base}_codes", f"{base}_scale", f"{base}_zp"],
                                     [f"{base}_dq"], name=f"{base}_dequantize", axis=layer.axis))
        weight_dq[layer.weight] = f"{base}_dq"
    needed = {layer.activation for layer in layers}
    for inp in graph.input:
        if inp.name in needed:
            head += act_pair(inp.name)
    for init in graph.initializer:
        if init.name in needed:
            head += act_pair(init.name)

    nodes = list(head)
    for node in graph.node:
        layer = by_node.get(node.name)
        if layer is not None:
            node.input[0] = act_qdq[layer.activation]
            node.input[1] = weight_dq[layer.weight]
        nodes.append(node)
        for out in node.output:
            if out in needed and out not in act_qdq:
                nodes += act_pair(out)
    replace_nodes(graph, nodes, new_inits)
    raise_opset(model, MIN_OPSET[precision])
    return model


def replace_nodes(graph: onnx.GraphProto, nodes: list, new_inits: list) -> None:
    """The graph's nodes become `nodes`, its initializers those still read plus `new_inits` (float weights no
    longer read by any node live on as codes)."""
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep + new_inits)
