"""Our ONNX ops (domain `ntc`), one folder per op with every implementation of its contract: PyTorch reference and
export, ONNX Runtime CPU op, decomposition into standard ops, Python TensorRT plugin."""

from .bc_decode.custom_op import bc_decode  # the torch.library op; this name shadows the subpackage attribute
from .domain import DOMAIN, STANDARD_DOMAINS, VERSION

__all__ = ["DOMAIN", "STANDARD_DOMAINS", "VERSION", "bc_decode"]
