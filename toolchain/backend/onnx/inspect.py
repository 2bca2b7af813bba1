"""Reading an ONNX file without running it: its precision, inputs, custom ops, model name."""

from pathlib import Path

import onnx

from ...ops.contract import validate_node
from ...ops.domain import DOMAIN, STANDARD_DOMAINS
from ...util.errors import NtcError


def model_name(onnx_path) -> str:
    """"model" for model.fp16.onnx / model.int8.onnx / model.onnx."""
    stem = Path(onnx_path).name.removesuffix(".onnx")
    base, _, last = stem.rpartition(".")
    return base if base and last in ("fp32", "fp16", "bf16", "int8", "fp8", "qdq") else stem


def onnx_precision(model: onnx.ModelProto) -> str:
    """The precision an ONNX is typed for: nvfp4/int4 when it holds FP4/INT4 weights (weight-only), fp8/int8 when it
    carries Q/DQ, else the dominant float weight type."""
    tp = onnx.TensorProto
    graph = model.graph
    elem_types = [t.data_type for t in graph.initializer]
    elem_types += [v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info, *graph.output]]
    elem_types += [a.i for n in graph.node for a in n.attribute if a.name in ("to", "output_dtype")]
    if tp.FLOAT4E2M1 in elem_types:  # checked before fp8: its block scales are FP8
        return "nvfp4"
    if any(t in (tp.INT4, tp.UINT4) for t in elem_types):
        return "int4"
    if any(t in (tp.FLOAT8E4M3FN, tp.FLOAT8E4M3FNUZ, tp.FLOAT8E5M2, tp.FLOAT8E5M2FNUZ) for t in elem_types):
        return "fp8"
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node):
        return "int8"
    counts = {tp.FLOAT: 0, tp.FLOAT16: 0, tp.BFLOAT16: 0}
    for init in graph.initializer:
        if init.data_type in counts:
            counts[init.data_type] += max(1, int(_volume(init.dims)))
    if not any(counts.values()):
        for v in [*graph.input, *graph.output]:
            t = v.type.tensor_type.elem_type
            if t in counts:
                counts[t] += 1
    best = max(counts, key=counts.get)
    return {tp.FLOAT: "fp32", tp.FLOAT16: "fp16", tp.BFLOAT16: "bf16"}[best] if counts[best] else "fp32"


def tensor_bytes(tensor: onnx.TensorProto) -> int:
    """Storage bytes of a constant tensor (read from its dims and type; the data need not be loaded): 4-bit types
    pack two values per byte."""
    count = _volume(tensor.dims)
    if tensor.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4, onnx.TensorProto.FLOAT4E2M1):
        return (count + 1) // 2
    return count * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize


def constant_bytes(model: onnx.ModelProto) -> int:
    """Bytes of the graph's constants (initializers and Constant nodes): what its weights cost to ship."""
    total = sum(tensor_bytes(t) for t in model.graph.initializer)
    for node in model.graph.node:
        if node.op_type == "Constant":
            total += sum(tensor_bytes(a.t) for a in node.attribute if a.type == onnx.AttributeProto.TENSOR)
    return total


def _volume(dims) -> int:
    v = 1
    for d in dims:
        v *= d
    return v


def custom_ops(model: onnx.ModelProto) -> dict[str, int]:
    """'domain::op' -> node count for every node outside the standard ONNX domain; validates ntc nodes."""
    found: dict[str, int] = {}
    for node in model.graph.node:
        if node.domain in STANDARD_DOMAINS:
            continue
        if node.domain != DOMAIN:
            raise NtcError(f"unknown custom op {node.domain}::{node.op_type} (node {node.name or node.output[0]!r}): "
                           f"TensorRT has no plugin for domain {node.domain!r}")
        validate_node(node)
        key = f"{node.domain}::{node.op_type}"
        found[key] = found.get(key, 0) + 1
    return found


def onnx_inputs(model: onnx.ModelProto) -> list[tuple[str, list[int]]]:
    """(name, shape) of the graph inputs that are not initializers; -1 marks a dynamic axis."""
    inits = {i.name for i in model.graph.initializer}
    return [(v.name, [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim])
            for v in model.graph.input if v.name not in inits]


def load_onnx_for(onnx_path, precision: str) -> onnx.ModelProto:
    """The ONNX graph (weights not loaded), checked to be typed for `precision` (strongly typed builds)."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise NtcError(f"{onnx_path}: no such ONNX file")
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:  # protobuf raises its own DecodeError
        raise NtcError(f"{onnx_path}: not a readable ONNX model ({str(e)[:200]})") from None
    typed = onnx_precision(model)
    if precision != "fp32" and typed != precision:
        raise NtcError(f"{onnx_path.name} is {typed}-typed but precision {precision} was asked: engines build "
                       f"strongly typed, so pass the {precision} ONNX (fp16/bf16: a converted model, int8/fp8: Q/DQ, "
                       "int4/nvfp4: weight-only)")
    if precision == "fp32" and typed != "fp32":
        raise NtcError(f"{onnx_path.name} is {typed}-typed, not fp32: pass the fp32 ONNX or ask for {typed}")
    return model




def has_custom_ops(path) -> bool:
    """Whether the ONNX file has nodes outside the standard ONNX domain (weights not loaded)."""
    model = onnx.load(str(path), load_external_data=False)
    return any(n.domain not in STANDARD_DOMAINS for n in model.graph.node)
