"""int8 at the interface, fp32 inside: the int8 artifact of graphs that have no weights to quantize (token selections).

A reducer (ToMe, VisionZip) has no MatMul/Gemm/Conv with constant weights, so Q/DQ inside it would quantize nothing
but its exact selection. What an int8 pipeline gains from it is the traffic: its token input arrives as int8 with a
calibrated per-tensor scale and goes through DequantizeLinear, its token output leaves through QuantizeLinear as
int8; its other float inputs and outputs (the ViT's keys and attention, the sizes) are fp16 as in the fp16 artifact
(fp16_io.py), and everything inside (the selection, the merge) is fp32, so the selection is the fp32 graph's on the
inputs as fed. The scales travel in the graph's metadata (`SCALES_KEY`): a runner quantizes its float feeds and
dequantizes the int8 outputs with them, exactly as QuantizeLinear/DequantizeLinear do.
"""

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .fp16_io import fp16_interface, reroute_input, reroute_output

SCALES_KEY = "ntc.int8_interface"  # metadata: JSON {tensor name: per-tensor scale} of the int8 inputs and outputs


def int8_interface(fp32: onnx.ModelProto, scales: dict[str, float]) -> onnx.ModelProto:
    """A copy of the fp32 graph whose float inputs/outputs named in `scales` are int8 (zero point 0), dequantized
    right after the input and quantized right before the output, and whose other float inputs/outputs are fp16."""
    floats = {v.name for v in [*fp32.graph.input, *fp32.graph.output]
              if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    unknown = sorted(set(scales) - floats)
    if unknown:
        raise ValueError(f"no float input or output named {', '.join(unknown)}")
    model = fp16_interface(fp32, keep=set(scales))
    graph = model.graph
    head, tail = [], []
    for name, scale in scales.items():  # one scale and zero point per tensor (an int8 zero point: int8 output)
        graph.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), f"{name}__scale"),
                                  numpy_helper.from_array(np.array(0, np.int8), f"{name}__zero_point")])
    for value in graph.input:
        if value.name in scales:
            inner = reroute_input(graph, value.name)
            head.append(helper.make_node("DequantizeLinear", [value.name, f"{value.name}__scale",
                                                              f"{value.name}__zero_point"], [inner],
                                         name=f"{inner}_dequantize"))
            value.type.tensor_type.elem_type = TensorProto.INT8
    for value in graph.output:
        if value.name in scales:
            inner = reroute_output(graph, value.name)
            tail.append(helper.make_node("QuantizeLinear", [inner, f"{value.name}__scale",
                                                            f"{value.name}__zero_point"], [value.name],
                                         name=f"{value.name}_quantize"))
            value.type.tensor_type.elem_type = TensorProto.INT8
    nodes = [*head, *graph.node, *tail]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                   SCALES_KEY: json.dumps({k: float(v) for k, v in scales.items()})})
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def interface_scales(metadata: dict[str, str]) -> dict[str, float]:
    """{tensor: scale} from a graph's metadata map (ONNX metadata_props or ORT's custom_metadata_map); {} if none."""
    text = metadata.get(SCALES_KEY)
    return {k: float(v) for k, v in json.loads(text).items()} if text else {}


def quantize(x: np.ndarray, scale: float) -> np.ndarray:
    """ONNX QuantizeLinear, zero point 0, int8: round half to even of x / scale (in float32), saturated."""
    return np.clip(np.rint(np.asarray(x, np.float32) / np.float32(scale)), -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, scale: float) -> np.ndarray:
    """ONNX DequantizeLinear, zero point 0: q * scale in float32."""
    return np.asarray(q).astype(np.float32) * np.float32(scale)


def interface_feed(name: str, x: np.ndarray, scales: dict[str, float]) -> np.ndarray:
    """A runner's feed: a float array for an int8 stream quantized with its scale, anything else as it is."""
    return quantize(x, scales[name]) if name in scales and np.issubdtype(x.dtype, np.floating) else x


def interface_output(name: str, x: np.ndarray, scales: dict[str, float]) -> np.ndarray:
    """A runner's output: an int8 stream dequantized with its scale, anything else as it is."""
    return dequantize(x, scales[name]) if name in scales else np.asarray(x)


def scale_for(amax: float) -> float:
    """The symmetric int8 scale that maps [-amax, amax] onto [-127, 127] (float32-representable)."""
    return float(np.float32(max(float(amax), np.finfo(np.float32).tiny) / 127))
