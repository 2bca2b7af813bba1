"""ONNX translations of our torch.library ops for the torch.export-based exporter (onnxscript), and the ONNX
schemas they need: onnxscript builds a node only for an op whose schema it can look up."""

import onnx
from onnx.defs import OpSchema

from .bc_decode.contract import OP as BC_DECODE
from .domain import DOMAIN, VERSION

_STRING = OpSchema.AttrType.STRING


def _register_schemas() -> None:
    """Declare ntc::BcDecode v1 to onnx (once per process): INT32 blocks in, float/float16 texels out."""
    if onnx.defs.has(BC_DECODE, DOMAIN):
        return
    onnx.defs.register_schema(OpSchema(
        BC_DECODE, DOMAIN, 1, inputs=[OpSchema.FormalParameter("blocks", "T1")],
        outputs=[OpSchema.FormalParameter("texels", "T2")],
        type_constraints=[("T1", ["tensor(int32)"], "BC blocks as INT32 words"),
                          ("T2", ["tensor(float)", "tensor(float16)"], "decoded texels")],
        attributes=[OpSchema.Attribute(name, _STRING, "") for name in ("format", "layout", "dtype", "plugin_version")]))


def translation_table() -> dict:
    """{torch op overload: onnxscript function} for torch.onnx.export(..., custom_translation_table=...)."""
    import onnxscript
    import torch

    from .bc_decode import custom_op  # noqa: F401  (registers torch.ops.ntc.bc_decode)

    _register_schemas()
    ntc = onnxscript.values.Opset(DOMAIN, 1)

    def bc_decode(blocks, fmt: str, layout: str = "tokens", dtype: str = "float32"):
        return ntc.BcDecode(blocks, format=fmt, layout=layout, dtype=dtype, plugin_version=VERSION)

    return {torch.ops.ntc.bc_decode.default: bc_decode}


def declare_output_types(model: onnx.ModelProto) -> None:
    """value_info for our nodes' outputs (dtype from the node's attribute, rank from its layout): the exporter does
    not serialize them, and the fp16 pass needs them to cast around its fp32 islands."""
    typed = {v.name for v in model.graph.value_info if v.type.tensor_type.elem_type != onnx.TensorProto.UNDEFINED}
    for node in model.graph.node:
        if node.domain != DOMAIN or node.op_type != BC_DECODE or node.output[0] in typed:
            continue
        keep = [v for v in model.graph.value_info if v.name != node.output[0]]
        del model.graph.value_info[:]
        model.graph.value_info.extend(keep)
        attrs = {a.name: onnx.helper.get_attribute_value(a).decode() for a in node.attribute}
        elem = onnx.TensorProto.FLOAT16 if attrs.get("dtype") == "float16" else onnx.TensorProto.FLOAT
        rank = 4 if attrs.get("layout") == "nchw" else 3
        model.graph.value_info.append(onnx.helper.make_tensor_value_info(node.output[0], elem, [None] * rank))
