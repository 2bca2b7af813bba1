"""ONNX translations of our torch.library ops for the torch.export-based exporter (onnxscript), and the ONNX
schemas they need: onnxscript builds a node only for an op whose schema it can look up."""

import onnx
from onnx.defs import OpSchema

from .bc_decode.contract import OP as BC_DECODE
from .domain import DOMAIN, VERSION
from .window_attention.contract import INPUTS as WINDOW_ATTENTION_INPUTS
from .window_attention.contract import OP as WINDOW_ATTENTION

_STRING, _INT, _FLOAT = OpSchema.AttrType.STRING, OpSchema.AttrType.INT, OpSchema.AttrType.FLOAT
_FLOATS = ["tensor(float)", "tensor(float16)"]


def _register_schemas() -> None:
    """Declare ntc::BcDecode v1 (INT32 blocks in, float/float16 texels out) and ntc::WindowAttention v1 (q, k, v,
    bias table, mask in; attention output in q's type) to onnx, once per process."""
    if not onnx.defs.has(BC_DECODE, DOMAIN):
        onnx.defs.register_schema(OpSchema(
            BC_DECODE, DOMAIN, 1, inputs=[OpSchema.FormalParameter("blocks", "T1")],
            outputs=[OpSchema.FormalParameter("texels", "T2")],
            type_constraints=[("T1", ["tensor(int32)"], "BC blocks as INT32 words"), ("T2", _FLOATS, "texels")],
            attributes=[OpSchema.Attribute(n, _STRING, "") for n in ("format", "layout", "dtype", "plugin_version")]))
    if not onnx.defs.has(WINDOW_ATTENTION, DOMAIN):
        onnx.defs.register_schema(OpSchema(
            WINDOW_ATTENTION, DOMAIN, 1, inputs=[OpSchema.FormalParameter(n, "T") for n in WINDOW_ATTENTION_INPUTS],
            outputs=[OpSchema.FormalParameter("output", "T")], type_constraints=[("T", _FLOATS, "q/k/v type")],
            attributes=[*(OpSchema.Attribute(n, _INT, "") for n in ("heads", "window", "shift")),
                        OpSchema.Attribute("scale", _FLOAT, ""), OpSchema.Attribute("plugin_version", _STRING, "")]))


def _register_pending_attention_schema() -> None:
    """The native lowering's placeholder (ntc.pending::Attention, rewritten by window_attention.finalize)."""
    from .window_attention.lowering import PENDING_DOMAIN

    if not onnx.defs.has("Attention", PENDING_DOMAIN):
        onnx.defs.register_schema(OpSchema(
            "Attention", PENDING_DOMAIN, 1, inputs=[OpSchema.FormalParameter(n, "T") for n in ("q", "k", "v", "mask")],
            outputs=[OpSchema.FormalParameter("output", "T")], type_constraints=[("T", _FLOATS, "q/k/v type")],
            attributes=[*(OpSchema.Attribute(n, _INT, "") for n in ("q_num_heads", "kv_num_heads")),
                        OpSchema.Attribute("scale", _FLOAT, "")]))


def translation_table() -> dict:
    """{torch op overload: onnxscript function} for torch.onnx.export(..., custom_translation_table=...)."""
    import onnxscript
    import torch

    from .bc_decode import custom_op  # noqa: F401  (registers torch.ops.ntc.bc_decode)
    from .window_attention import custom_op as _  # noqa: F401  (registers torch.ops.ntc.window_attention)
    from .window_attention.lowering import PENDING_DOMAIN

    _register_schemas()
    _register_pending_attention_schema()
    ntc = onnxscript.values.Opset(DOMAIN, 1)
    pending = onnxscript.values.Opset(PENDING_DOMAIN, 1)

    def bc_decode(blocks, fmt: str, layout: str = "tokens", dtype: str = "float32"):
        return ntc.BcDecode(blocks, format=fmt, layout=layout, dtype=dtype, plugin_version=VERSION)

    def window_attention(q, k, v, bias_table, mask, heads: int, window: int, shift: int, scale: float):
        return ntc.WindowAttention(q, k, v, bias_table, mask, heads=heads, window=window, shift=shift, scale=scale,
                                   plugin_version=VERSION)

    def native_attention(q, k, v, attn_mask, heads: int, scale: float):
        return pending.Attention(q, k, v, attn_mask, q_num_heads=heads, kv_num_heads=heads, scale=scale)

    return {torch.ops.ntc.bc_decode.default: bc_decode, torch.ops.ntc.window_attention.default: window_attention,
            torch.ops.ntc_pending.attention.default: native_attention}


def declare_output_types(model: onnx.ModelProto) -> None:
    """value_info for our nodes' outputs (BcDecode: dtype from the node's attribute, rank from its layout;
    WindowAttention: q's type, rank 3): the exporter does not serialize them, and the fp16 pass needs them to cast
    around its fp32 islands."""
    known = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.value_info)}
    typed = {name for name, elem in known.items() if elem != onnx.TensorProto.UNDEFINED}
    for node in model.graph.node:
        if node.domain != DOMAIN or node.op_type not in (BC_DECODE, WINDOW_ATTENTION) or node.output[0] in typed:
            continue
        keep = [v for v in model.graph.value_info if v.name != node.output[0]]
        del model.graph.value_info[:]
        model.graph.value_info.extend(keep)
        if node.op_type == WINDOW_ATTENTION:
            elem, rank = known.get(node.input[0]) or onnx.TensorProto.FLOAT, 3
        else:
            attrs = {a.name: onnx.helper.get_attribute_value(a).decode() for a in node.attribute}
            elem = onnx.TensorProto.FLOAT16 if attrs.get("dtype") == "float16" else onnx.TensorProto.FLOAT
            rank = 4 if attrs.get("layout") == "nchw" else 3
        model.graph.value_info.append(onnx.helper.make_tensor_value_info(node.output[0], elem, [None] * rank))
