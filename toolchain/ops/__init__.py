"""Our ONNX ops (domain `ntc`), one folder per op with every implementation of its contract: PyTorch reference and
export, ONNX Runtime CPU op, decomposition into standard ops, Python TensorRT plugin."""

from .domain import DOMAIN, STANDARD_DOMAINS, VERSION

__all__ = ["DOMAIN", "STANDARD_DOMAINS", "VERSION"]
