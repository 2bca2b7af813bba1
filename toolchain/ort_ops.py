"""CPU implementations of our ntc:: custom ops for ONNX Runtime.

ONNX Runtime's Python custom ops live in the onnxruntime-extensions domain, not "ntc", so a graph with plugin nodes
is run through an in-memory copy made by each op module's `prepare(model)`; `register_custom_ops(session_options)`
then defines each op and loads the extensions library once. The file on disk keeps its ntc:: nodes (what TensorRT
reads).
"""

import importlib

import onnx

_OP_MODULES = ("ntc_export.bc.ort_op", "ntc_export.attention.ort_op")


def _modules():
    for name in _OP_MODULES:
        try:
            yield importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise


def extensions_domain() -> str:
    """The domain onnxruntime-extensions serves Python custom ops from ("ai.onnx.contrib")."""
    from onnxruntime_extensions import default_opset_domain

    return default_opset_domain()


def has_plugin_nodes(model: onnx.ModelProto) -> bool:
    return any(n.domain == "ntc" for n in model.graph.node)


def prepare_for_ort(model: onnx.ModelProto) -> onnx.ModelProto:
    """An ONNX Runtime-runnable copy of a graph with ntc:: plugin nodes."""
    for mod in _modules():
        model = mod.prepare(model)
    return model


def register_custom_ops(session_options) -> None:
    """Define every op, then load the extensions library once (a second load re-registers its operators)."""
    from onnxruntime_extensions import get_library_path

    for mod in _modules():
        mod.define()
    session_options.register_custom_ops_library(get_library_path())
