"""ONNX Runtime CPU support for ntc::WindowAttention v1 graphs.

onnxruntime-extensions' Python custom ops always register in its own domain ("ai.onnx.contrib", not "ntc") and
accept no fp16 (an fp16 input aborts the process). So `define()` adds a NumPy implementation of the contract to
the extensions library's op table, and `prepare(model)` makes an ORT copy of a plugin graph: fp32 plugin nodes
move to the extensions domain (run by that implementation), other dtypes are swapped for the standard-op
decomposition (`lowering.swap_plugins_for_validation`).
"""

import functools

import numpy as np
import onnx
from onnx import TensorProto

from ..domain import DOMAIN, drop_unused_domain, extensions_domain, import_domain
from .lowering import PLUGIN_OP, elem_types, plugin_nodes, swap_plugins_for_validation


def window_attention(q, k, v, bias_table, mask, heads: int, window: int, scale: float) -> np.ndarray:
    """The ntc::WindowAttention v1 contract in NumPy (fp64 accumulation): q/k/v [BW, heads, T, hd],
    bias_table [(2w-1)^2, heads], mask [nW, T, T] -> [BW, T, heads*hd] in q's dtype."""
    bw, nh, t, hd = q.shape
    if nh != heads or t != window * window or bias_table.shape != ((2 * window - 1) ** 2, heads):
        raise ValueError(f"WindowAttention: shapes q{q.shape} table{bias_table.shape} disagree with heads={heads} "
                         f"window={window}")
    if mask.ndim != 3 or mask.shape[1:] != (t, t) or bw % mask.shape[0]:
        raise ValueError(f"WindowAttention: mask {mask.shape} does not fit {bw} windows of {t} tokens")
    yx = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij"), -1).reshape(t, 2)
    rel = yx[:, None, :] - yx[None, :, :] + window - 1
    bias = bias_table.astype(np.float64)[rel[..., 0] * (2 * window - 1) + rel[..., 1]]  # [T, T, heads]
    scores = scale * np.einsum("bhid,bhjd->bhij", q.astype(np.float64), k.astype(np.float64))
    scores = scores + bias.transpose(2, 0, 1)[None] + np.tile(mask.astype(np.float64), (bw // mask.shape[0], 1, 1))[:, None]
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    probs = scores / scores.sum(-1, keepdims=True)
    out = np.einsum("bhij,bhjd->bihd", probs, v.astype(np.float64))
    return out.reshape(bw, t, nh * hd).astype(q.dtype)


def _define_op():
    from onnxruntime_extensions import PyCustomOpDef, onnx_op

    attrs = {"heads": PyCustomOpDef.dt_int64, "window": PyCustomOpDef.dt_int64, "shift": PyCustomOpDef.dt_int64,
             "scale": PyCustomOpDef.dt_float, "plugin_version": PyCustomOpDef.dt_string}

    @onnx_op(op_type=PLUGIN_OP, inputs=[PyCustomOpDef.dt_float] * 5, outputs=[PyCustomOpDef.dt_float], attrs=attrs)
    def _window_attention_op(q, k, v, bias_table, mask, heads, window, shift, scale, plugin_version):
        return window_attention(q, k, v, bias_table, mask, heads, window, scale)


@functools.cache
def define() -> None:
    """Define the Python custom op once per process (onnxruntime-extensions keeps a global table); sessions get it
    through ntc_export.ops.ort_registry.register_custom_ops, which loads the extensions library once."""
    _define_op()


def prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    """ORT-runnable copy of a plugin graph: fp32 nodes to the extensions domain, others decomposed."""
    nodes = plugin_nodes(model)
    if not nodes:
        return model
    types = elem_types(onnx.shape_inference.infer_shapes(model, strict_mode=False))
    not_fp32 = {n.output[0] for n in nodes if any(types.get(i) != TensorProto.FLOAT for i in n.input)}
    model = swap_plugins_for_validation(model, only=not_fp32) if not_fp32 else \
        onnx.ModelProto.FromString(model.SerializeToString())
    domain = extensions_domain()
    for node in model.graph.node:
        if node.domain == DOMAIN and node.op_type == PLUGIN_OP:
            node.domain = domain
    import_domain(model, domain)
    drop_unused_domain(model, DOMAIN)
    return model
