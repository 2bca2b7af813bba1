"""Window attention lowerings for ONNX export (plugin / native / decomposed) and their ONNX Runtime support."""

from .lowering import MODES, export_context, finalize, mark_trt_decomposable, swap_plugins_for_validation

__all__ = ["MODES", "export_context", "finalize", "mark_trt_decomposable", "swap_plugins_for_validation"]
