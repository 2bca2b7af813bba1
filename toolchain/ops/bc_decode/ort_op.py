"""ONNX Runtime CPU support for ntc::BcDecode v1 graphs (every format), through the host decoder.

onnxruntime-extensions' Python custom ops always live in its own domain ("ai.onnx.contrib", not "ntc") and their
fp16 tensors are unreliable, so: `define()` adds an fp32-output BcDecode implementation to the extensions
library's op table, and `prepare(model)` makes the ORT copy of a graph: each ntc::BcDecode
node moves to the extensions domain with dtype float32, followed by a Cast to float16 where the node was float16
(exact: UNORM values are value/255 in fp32 rounded once to fp16, BC6H halves widen to fp32 exactly).
`ntc_export.backend.onnxrt.runner.OrtRunner` applies `prepare` and registers the ops through `ntc_export.ops.ort_registry`.
"""

import functools

import numpy as np
import onnx
from onnx import TensorProto, helper

from ...codec.decode import decode, int32_to_blocks
from ...codec.formats import CHANNELS, FORMAT_CODES, WORDS
from ..domain import DOMAIN, drop_unused_domain, extensions_domain, import_domain
from .torch_op import LAYOUTS, PLUGIN_OP


def bc_decode_numpy(blocks: np.ndarray, fmt: str, layout: str) -> np.ndarray:
    """The v1 contract with float32 output, via the host decoder: INT32 [B, by, bx, W] -> nchw or tokens."""
    if fmt not in FORMAT_CODES or layout not in LAYOUTS:
        raise ValueError(f"BcDecode: unsupported format {fmt!r} or layout {layout!r}")
    blocks = np.asarray(blocks)
    if blocks.dtype != np.int32 or blocks.ndim != 4 or blocks.shape[-1] != WORDS[fmt]:
        raise ValueError(f"BcDecode: {fmt} blocks must be INT32 [B, by, bx, {WORDS[fmt]}], got "
                         f"{blocks.dtype} {list(blocks.shape)}")
    b, by, bx, _ = blocks.shape
    c = CHANNELS[fmt]
    raw = int32_to_blocks(np.ascontiguousarray(blocks))
    out = np.empty((b, 4 * by, 4 * bx, c), np.float32)
    for i in range(b):
        img = decode(raw[i], fmt, 4 * by, 4 * bx).reshape(4 * by, 4 * bx, c)
        out[i] = img.astype(np.float32) if fmt.startswith("bc6h") else img.astype(np.float32) / np.float32(255)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)) if layout == "nchw" else out.reshape(b, -1, c)


def _define_op():
    from onnxruntime_extensions import PyCustomOpDef, onnx_op

    attrs = {k: PyCustomOpDef.dt_string for k in ("format", "layout", "dtype", "plugin_version")}

    @onnx_op(op_type=PLUGIN_OP, inputs=[PyCustomOpDef.dt_int32], outputs=[PyCustomOpDef.dt_float], attrs=attrs)
    def _bc_decode_op(blocks, format, layout, dtype, plugin_version):  # noqa: A002 (contract attribute name)
        if dtype != "float32" or plugin_version != "1":
            raise ValueError(f"BcDecode: this implementation runs prepared v1 float32 nodes, got dtype={dtype!r} "
                             f"plugin_version={plugin_version!r}")
        return bc_decode_numpy(blocks, format, layout)


@functools.cache
def define() -> None:
    """Define the Python custom op once per process (onnxruntime-extensions keeps a global table); sessions get it
    through ntc_export.ops.ort_registry.register_custom_ops, which loads the extensions library once."""
    _define_op()


def plugin_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.domain == DOMAIN and n.op_type == PLUGIN_OP]


def _attr(node: onnx.NodeProto, name: str) -> str:
    for a in node.attribute:
        if a.name == name:
            return a.s.decode()
    raise ValueError(f"BcDecode node {node.name!r} lacks attribute {name!r}")


def prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    """ORT-runnable copy: ntc::BcDecode nodes retargeted to the extensions domain (float32, + Cast for float16)."""
    if not plugin_nodes(model):
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    domain = extensions_domain()
    nodes = []
    for node in model.graph.node:
        if node.domain == DOMAIN and node.op_type == PLUGIN_OP:
            node.domain = domain
            if _attr(node, "dtype") == "float16":
                for a in node.attribute:
                    if a.name == "dtype":
                        a.s = b"float32"
                out = node.output[0]
                node.output[0] = f"{out}_bc_fp32"
                nodes += [node, helper.make_node("Cast", [node.output[0]], [out], to=TensorProto.FLOAT16,
                                                 name=f"{node.name}_to_fp16")]
                continue
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    import_domain(model, domain)
    drop_unused_domain(model, DOMAIN)
    return model
