"""Weight-only graphs: a layer's float weight becomes a blocked DequantizeLinear of INT4 or FP4 values.

Pattern (what TensorRT runs as a weight-only low-bit GEMM): MatMul/Gemm whose constant weight comes from
- int4:  DequantizeLinear(INT4 values, block scales in the graph's float type, axis=K, block_size);
- nvfp4: DequantizeLinear(FP8 block scales, fp32 global scale) -> DequantizeLinear(FP4 values, those scales, axis=K,
  block_size=16) -> Cast to the graph's float type.
Activations keep their float type; an AWQ pre-scale is a Mul of the activation by 1/s before the layer. The
reference form writes the same weights as float constants computed by the numpy dequantization, for runtimes
without the FP4 type (ONNX Runtime's CPU DequantizeLinear has no FLOAT4E2M1 kernel).
"""

from dataclasses import dataclass

import ml_dtypes
import numpy as np
import onnx
from onnx import helper, numpy_helper

from .int4 import int4_dequantize
from .nvfp4 import nvfp4_dequantize
from .qdq import Layer, constants, raise_opset, replace_nodes

# INT4 DequantizeLinear with block_size came in opset 21 (IR 10); FLOAT4E2M1 in opset 23 (IR 11).
MIN_OPSET = {"int4": 21, "nvfp4": 23}
MIN_IR = {"int4": 10, "nvfp4": 11}


@dataclass
class QuantizedWeight:
    """One layer's weight in a weight-only format, K-major ([K, N]); `pre_scale` multiplies the activation."""

    precision: str
    layer: Layer
    block: int
    values: np.ndarray  # int8 holding INT4 codes, or float4_e2m1fn
    scales: np.ndarray  # int4: block scales in the graph's float type; nvfp4: float8_e4m3fn
    global_scale: np.float32 | None
    pre_scale: np.ndarray | None  # 1/s in the graph's float type
    dtype: np.dtype  # the graph's float type of this weight

    @property
    def k_axis(self) -> int:
        """Axis of the input channels in the stored weight (MatMul [K, N]: 0; Gemm transB [N, K]: 1)."""
        return 1 - self.layer.axis

    def dequantized(self) -> np.ndarray:
        """The weight as the DequantizeLinear chain returns it, K-major, in the graph's float type."""
        if self.precision == "int4":
            return int4_dequantize(self.values, self.scales, self.block)
        return nvfp4_dequantize(self.values, self.scales, self.global_scale, self.block, self.dtype)


def _stored(q: QuantizedWeight, k_major: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(k_major if q.k_axis == 0 else k_major.T)


def _weight_nodes(q: QuantizedWeight, reference: bool) -> tuple[list, list, str]:
    """(initializers, nodes, output name) producing the layer's float weight."""
    base = f"{q.layer.weight}_{q.precision}"
    if reference:
        return [numpy_helper.from_array(_stored(q, q.dequantized()), f"{base}_reference")], [], f"{base}_reference"
    values = q.values.astype(ml_dtypes.int4) if q.precision == "int4" else q.values
    inits = [numpy_helper.from_array(_stored(q, values), f"{base}_values"),
             numpy_helper.from_array(_stored(q, q.scales), f"{base}_scale")]
    blocked = dict(axis=q.k_axis, block_size=q.block)
    if q.precision == "int4":
        return inits, [helper.make_node("DequantizeLinear", [f"{base}_values", f"{base}_scale"], [f"{base}_dq"],
                                        name=f"{base}_dequantize", **blocked)], f"{base}_dq"
    inits.append(numpy_helper.from_array(np.asarray(q.global_scale, np.float32), f"{base}_global_scale"))
    nodes = [helper.make_node("DequantizeLinear", [f"{base}_scale", f"{base}_global_scale"], [f"{base}_scale_dq"],
                              name=f"{base}_scale_dequantize"),
             helper.make_node("DequantizeLinear", [f"{base}_values", f"{base}_scale_dq"], [f"{base}_dq"],
                              name=f"{base}_dequantize", **blocked)]
    out = f"{base}_dq"
    if q.dtype != np.float32:  # the two DequantizeLinear nodes compute in fp32 (their scale's type)
        nodes.append(helper.make_node("Cast", [out], [f"{base}_cast"], name=f"{base}_cast",
                                      to=helper.np_dtype_to_tensor_dtype(np.dtype(q.dtype))))
        out = f"{base}_cast"
    return inits, nodes, out


def _raise_versions(model: onnx.ModelProto, precision: str) -> None:
    """Raise the default-domain opset and the IR version the weight types need."""
    raise_opset(model, MIN_OPSET[precision])
    model.ir_version = max(model.ir_version, MIN_IR[precision])


def insert_weight_dq(model: onnx.ModelProto, quantized: list[QuantizedWeight], reference: bool = False
                     ) -> onnx.ModelProto:
    """A copy of `model` whose layers in `quantized` read their weight from a blocked DequantizeLinear chain (or,
    with `reference`, from the float constant that chain computes); unused float weights are dropped."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    by_node = {q.layer.node: q for q in quantized}
    head, new_inits, weight_out, first = [], [], {}, {}
    for q in quantized:
        if q.layer.weight not in weight_out:
            first[q.layer.weight] = q  # a weight read by several layers is written once, with its first pre-scale
            inits, nodes, weight_out[q.layer.weight] = _weight_nodes(q, reference)
            new_inits += inits
            head += nodes
    nodes = list(head)
    for node in graph.node:
        q = by_node.get(node.name)
        if q is not None:
            node.input[1] = weight_out[q.layer.weight]
            pre_scale = first[q.layer.weight].pre_scale
            if pre_scale is not None:
                scale, out = f"{node.name}_awq_inv_scale", f"{node.name}_awq_input"
                new_inits.append(numpy_helper.from_array(pre_scale, scale))
                nodes.append(helper.make_node("Mul", [node.input[0], scale], [out], name=f"{node.name}_awq_scale"))
                node.input[0] = out
        nodes.append(node)
    replace_nodes(graph, nodes, new_inits)
    if quantized and not reference:
        _raise_versions(model, quantized[0].precision)
    return model


def float_weight_types(model: onnx.ModelProto, layers: list[Layer]) -> dict[str, np.dtype]:
    """weight name -> its float type in `model` (a layer whose weight is not a float constant there is left out)."""
    consts = constants(model.graph)
    return {layer.weight: consts[layer.weight].dtype for layer in layers
            if layer.weight in consts and consts[layer.weight].dtype in (np.float16, np.float32)}
