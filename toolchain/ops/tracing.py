"""Whether a model is being traced for export, by either exporter."""

import torch


def exporting() -> bool:
    """True inside torch.onnx.export (TorchScript or torch.export-based) and inside torch.export.export: data checks
    are skipped (they read tensor values) and our ops take their export form."""
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()
