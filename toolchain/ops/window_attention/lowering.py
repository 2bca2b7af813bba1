"""Export-time lowerings of WindowAttention's core and the post-export passes that finish them.

- "decomposed": MatMul-Softmax-MatMul with bias + mask added (standard ops, runs everywhere);
- "plugin": one `ntc::WindowAttention` v1 node per attention (the plugin gathers the bias from the table);
- "native": ONNX `Attention` (opset 23), windows folded into batch, bias + mask as one additive attn_mask of the
  Q/K/V dtype. The legacy exporter stops at opset 20, so a placeholder node is emitted and `finalize` rewrites it.
"""

import contextvars
from contextlib import contextmanager

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from ...util.errors import NtcError
from ..domain import DOMAIN, STANDARD_DOMAINS, VERSION, drop_unused_domain
from .contract import OP as PLUGIN_OP
from .reference import attention_decomposed, relative_position_index

MODES = ("plugin", "native", "decomposed")
PENDING_DOMAIN = "ntc.pending"  # placeholder domain; never survives `finalize`
ATTENTION_OPSET = 23
# onnx.checker rejects unknown attributes on standard ops, so TensorRT-RTX's fp32 opt-in lives in metadata.
TRT_DECOMPOSABLE_KEY = "ntc.attention.trt_decomposable"
TRT_DECOMPOSABLE = "TRT_decomposable"  # the node attribute TensorRT-RTX reads

_mode: contextvars.ContextVar[str | None] = contextvars.ContextVar("ntc_attention_lowering", default=None)


@contextmanager
def export_context(mode: str):
    """Make WindowAttention modules emit lowering `mode` while torch.onnx.export runs inside this block."""
    if mode not in MODES:
        raise NtcError(f"unknown attention lowering {mode!r}; choose from {', '.join(MODES)}")
    token = _mode.set(mode)
    try:
        yield mode
    finally:
        _mode.reset(token)


def active_mode() -> str | None:
    return _mode.get()


def emit(module, q, k, v, mask):
    """The active lowering of `module`'s attention core on [BW, T, C] q/k/v and [nW, T, T] mask; None means
    "use the decomposed PyTorch path"."""
    mode = _mode.get()
    if mode in (None, "decomposed"):
        return None
    table = module.relative_position_bias_table.to(q.dtype)
    exported = torch.compiler.is_exporting()  # torch.export: torch.library ops instead of autograd symbolics
    if mode == "plugin":
        split = module.split_heads
        if exported:
            return torch.ops.ntc.window_attention(split(q), split(k), split(v), table, mask, module.heads,
                                                  module.window, module.shift, float(module.scale))
        return WindowAttentionPlugin.apply(split(q), split(k), split(v), table, mask, module.heads, module.window,
                                           module.shift, float(module.scale))
    bias = module.relative_bias().to(q.dtype)  # [heads, T, T]
    t = q.shape[1]
    n_windows = mask.shape[0]
    attn_mask = bias.unsqueeze(0).unsqueeze(0) + mask.unsqueeze(1).unsqueeze(0)  # [1, nW, heads, T, T]
    attn_mask = attn_mask.expand(q.shape[0] // n_windows, -1, -1, -1, -1).reshape(-1, module.heads, t, t)
    if exported:
        return torch.ops.ntc_pending.attention(q, k, v, attn_mask, module.heads, float(module.scale))
    return AttentionPlaceholder.apply(q, k, v, attn_mask, module.heads, float(module.scale))


def _reference(q4, k4, v4, bias, mask, scale):
    return attention_decomposed(q4, k4, v4, bias, mask, scale)


class WindowAttentionPlugin(torch.autograd.Function):
    """Exports as one ntc::WindowAttention v1 node; runs the PyTorch reference while tracing."""

    @staticmethod
    def forward(ctx, q, k, v, table, mask, heads, window, shift, scale):
        t = window * window
        bias = table[relative_position_index(window).flatten()].reshape(t, t, heads).permute(2, 0, 1)
        return _reference(q, k, v, bias, mask, scale)

    @staticmethod
    def symbolic(g, q, k, v, table, mask, heads, window, shift, scale):
        out = g.op(f"{DOMAIN}::{PLUGIN_OP}", q, k, v, table, mask, heads_i=heads, window_i=window,
                   shift_i=shift, scale_f=scale, plugin_version_s=VERSION)
        out.setType(q.type().with_sizes([None, None, None]))
        return out


class AttentionPlaceholder(torch.autograd.Function):
    """Stands in for ONNX Attention (3-D Q/K/V [BW, T, C], additive attn_mask [BW, heads, T, T]) until `finalize`."""

    @staticmethod
    def forward(ctx, q, k, v, attn_mask, heads, scale):
        bw, t, c = q.shape
        split = lambda x: x.reshape(bw, t, heads, c // heads).transpose(1, 2)  # noqa: E731
        attn = ((split(q) * scale) @ split(k).transpose(-2, -1) + attn_mask).softmax(dim=-1)
        return (attn @ split(v)).transpose(1, 2).reshape(bw, t, c)

    @staticmethod
    def symbolic(g, q, k, v, attn_mask, heads, scale):
        out = g.op(f"{PENDING_DOMAIN}::Attention", q, k, v, attn_mask, q_num_heads_i=heads, kv_num_heads_i=heads,
                   scale_f=scale)
        out.setType(q.type())
        return out


@torch.library.custom_op("ntc_pending::attention", mutates_args=())
def pending_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor, heads: int,
                      scale: float) -> torch.Tensor:
    """AttentionPlaceholder for torch.export: translated to the same ntc.pending::Attention node (onnx_translations)."""
    return AttentionPlaceholder.forward(None, q, k, v, attn_mask, heads, scale)


@pending_attention.register_fake
def _pending_attention_fake(q, k, v, attn_mask, heads, scale):
    return torch.empty_like(q)


def finalize(model: onnx.ModelProto, mode: str) -> onnx.ModelProto:
    """Post-export pass for lowering `mode`: "native" rewrites placeholders into opset-23 Attention; otherwise
    the model is returned unchanged (after checking no placeholder leaked)."""
    if mode not in MODES:
        raise NtcError(f"unknown attention lowering {mode!r}; choose from {', '.join(MODES)}")
    pending = [n for n in model.graph.node if n.domain == PENDING_DOMAIN]
    if mode == "native":
        return placeholders_to_attention(model) if pending else model
    if pending:
        raise NtcError(f"model holds {len(pending)} native-attention placeholder(s) but lowering is {mode!r}")
    return model


def _opset(model: onnx.ModelProto, domain: str) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ((domain,) if domain else STANDARD_DOMAINS)),
                None)


def placeholders_to_attention(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite each ntc.pending::Attention into ONNX Attention and lift the default-domain opset to 23.

    The other ops exported at opset 18 keep their semantics at 23 (their later versions only add types/modes);
    GridSample is the exception (mode names changed in 20), so models using it are refused."""
    import onnx_graphsurgeon as gs

    if any(n.op_type == "GridSample" and n.domain in STANDARD_DOMAINS for n in model.graph.node):
        raise NtcError("native attention lowering cannot lift a model using GridSample to opset 23")
    graph = gs.import_onnx(model)
    for node in graph.nodes:
        if node.domain == PENDING_DOMAIN and node.op == "Attention":
            node.domain = None
            node.op = "Attention"
            node.attrs = {"q_num_heads": int(node.attrs["q_num_heads"]), "kv_num_heads": int(node.attrs["kv_num_heads"]),
                          "scale": float(node.attrs["scale"])}
    graph.opset = max(ATTENTION_OPSET, graph.opset or 0)
    graph.import_domains = [helper.make_opsetid("", graph.opset)] + [
        d for d in (graph.import_domains or []) if d.domain not in (PENDING_DOMAIN, *STANDARD_DOMAINS)]
    out = gs.export_onnx(graph)
    metadata = {n.name: list(n.metadata_props) for n in model.graph.node if n.metadata_props}
    for node in out.graph.node:  # graphsurgeon drops node metadata: the exporter's module scopes (per-layer drift)
        node.metadata_props.extend(metadata.get(node.name, []))
    out.ir_version = max(model.ir_version, 10)  # opset 23 needs IR >= 10
    out.producer_name, out.producer_version = model.producer_name, model.producer_version
    _set_metadata(out, TRT_DECOMPOSABLE_KEY, "1")
    return out


def mark_fp32_attention_decomposable(model: onnx.ModelProto) -> int:
    """Add TRT_decomposable=1 in place to ONNX Attention nodes with fp32 Q (fp32 graphs, and the float islands of
    Q/DQ graphs): TensorRT-RTX has no fused fp32 attention kernel and refuses the build otherwise. Returns how many
    nodes changed. Build-only: onnx.checker rejects the attribute."""
    types = elem_types(onnx.shape_inference.infer_shapes(model, strict_mode=False))
    changed = 0
    for node in model.graph.node:
        if node.op_type == "Attention" and node.domain in STANDARD_DOMAINS and \
                types.get(node.input[0]) == TensorProto.FLOAT and \
                not any(a.name == TRT_DECOMPOSABLE for a in node.attribute):
            node.attribute.append(helper.make_attribute(TRT_DECOMPOSABLE, 1))
            changed += 1
    return changed


def mark_trt_decomposable(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with `TRT_decomposable=1` on every fp32 Attention node, for the TensorRT-RTX parser only."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    mark_fp32_attention_decomposable(model)
    return model


def _set_metadata(model: onnx.ModelProto, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    model.metadata_props.add(key=key, value=value)


def elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Tensor name -> element type, from inputs, outputs, value_info and initializers."""
    types = {i.name: i.data_type for i in model.graph.initializer}
    for vi in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    return types


def plugin_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.domain == DOMAIN and n.op_type == PLUGIN_OP]


def swap_plugins_for_validation(model: onnx.ModelProto, only=None) -> onnx.ModelProto:
    """Copy with every ntc::WindowAttention node (or those whose output is in `only`) replaced by its decomposition in
    standard ops, computed in fp32 and cast back to the node's dtype (as the CUDA kernel accumulates).

    ONNX Runtime's Python custom ops live only in the "ai.onnx.contrib" domain and take no fp16, so this is how a
    plugin graph in any dtype runs on plain ORT (CPU or CUDA EP) for validation against PyTorch."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    if (_opset(model, "") or 0) < 15:
        raise NtcError("swap_plugins_for_validation needs a default-domain opset >= 15 (CastLike)")
    new_nodes = []
    for idx, node in enumerate(model.graph.node):
        if node.domain == DOMAIN and node.op_type == PLUGIN_OP and (only is None or node.output[0] in only):
            new_nodes.extend(_decomposition(node, f"{node.name or 'window_attention'}_{idx}", model))
        else:
            new_nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    drop_unused_domain(model, DOMAIN)
    return model


def _decomposition(node: onnx.NodeProto, prefix: str, model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Standard-op nodes computing the ntc::WindowAttention contract for `node` (initializers added to `model`)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    heads, window, scale = int(attrs["heads"]), int(attrs["window"]), float(attrs["scale"])
    t = window * window
    q, k, v, table, mask = node.input
    out = node.output[0]
    n = lambda s: f"{prefix}/{s}"  # noqa: E731
    consts = {
        "index": relative_position_index(window).flatten().numpy().astype(np.int64),
        "bias_shape": np.array([t, t, heads], np.int64),
        "scale": np.array(scale, np.float32),
        "minus_one": np.array([-1], np.int64),
        "head_tt": np.array([heads, t, t], np.int64),
        "flat4": np.array([-1, heads, t, t], np.int64),
        "merge_heads": np.array([0, 0, -1], np.int64),
        "axis1": np.array([1], np.int64),
    }
    for key, val in consts.items():
        model.graph.initializer.append(numpy_helper.from_array(val, n(key)))
    mk = helper.make_node
    return [
        *[mk("Cast", [x], [n(f"{x_name}_f32")], to=TensorProto.FLOAT, name=n(f"cast_{x_name}"))
          for x, x_name in ((q, "q"), (k, "k"), (v, "v"), (table, "table"), (mask, "mask"))],
        mk("Gather", [n("table_f32"), n("index")], [n("bias_flat")], axis=0, name=n("gather_bias")),
        mk("Reshape", [n("bias_flat"), n("bias_shape")], [n("bias_tth")], name=n("reshape_bias")),
        mk("Transpose", [n("bias_tth")], [n("bias")], perm=[2, 0, 1], name=n("transpose_bias")),
        mk("Mul", [n("q_f32"), n("scale")], [n("q_scaled")], name=n("scale_q")),
        mk("Transpose", [n("k_f32")], [n("k_t")], perm=[0, 1, 3, 2], name=n("transpose_k")),
        mk("MatMul", [n("q_scaled"), n("k_t")], [n("scores")], name=n("qk")),
        mk("Add", [n("scores"), n("bias")], [n("scores_bias")], name=n("add_bias")),
        mk("Shape", [n("mask_f32")], [n("n_windows")], start=0, end=1, name=n("n_windows")),
        mk("Concat", [n("minus_one"), n("n_windows"), n("head_tt")], [n("by_window")], axis=0, name=n("by_window")),
        mk("Reshape", [n("scores_bias"), n("by_window")], [n("scores_w")], name=n("split_windows")),
        mk("Unsqueeze", [n("mask_f32"), n("axis1")], [n("mask_w")], name=n("unsqueeze_mask")),
        mk("Add", [n("scores_w"), n("mask_w")], [n("scores_masked_w")], name=n("add_mask")),
        mk("Reshape", [n("scores_masked_w"), n("flat4")], [n("scores_masked")], name=n("merge_windows")),
        mk("Softmax", [n("scores_masked")], [n("probs")], axis=-1, name=n("softmax")),
        mk("MatMul", [n("probs"), n("v_f32")], [n("context")], name=n("pv")),
        mk("Transpose", [n("context")], [n("context_t")], perm=[0, 2, 1, 3], name=n("transpose_context")),
        mk("Reshape", [n("context_t"), n("merge_heads")], [n("out_f32")], name=n("merge_heads")),
        mk("CastLike", [n("out_f32"), q], [out], name=n("cast_out")),
    ]
