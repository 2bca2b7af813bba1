"""CPU implementations of our ntc:: custom ops for ONNX Runtime.

ONNX Runtime's Python custom ops live in the onnxruntime-extensions domain, not "ntc", so a graph with plugin nodes
is run through an in-memory copy made by each op module's `prepare(model)`; `register_custom_ops(session_options)`
then defines each op and loads the extensions library once. The file on disk keeps its ntc:: nodes (what TensorRT
reads).
"""

import onnx

from .bc_decode import ort_op as bc_decode_ort
from .domain import DOMAIN
from .window_attention import ort_op as window_attention_ort

OP_MODULES = (bc_decode_ort, window_attention_ort)  # each: define() and prepare(model)


def has_plugin_nodes(model: onnx.ModelProto) -> bool:
    return any(n.domain == DOMAIN for n in model.graph.node)


def prepare_for_ort(model: onnx.ModelProto) -> onnx.ModelProto:
    """An ONNX Runtime-runnable copy of a graph with ntc:: plugin nodes."""
    for mod in OP_MODULES:
        model = mod.prepare(model)
    return model


def register_custom_ops(session_options) -> None:
    """Define every op, then load the extensions library once (a second load re-registers its operators)."""
    from onnxruntime_extensions import get_library_path

    for mod in OP_MODULES:
        mod.define()
    session_options.register_custom_ops_library(get_library_path())
