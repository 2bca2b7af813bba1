"""Our ONNX ops (domain `ntc`), one folder per op with every implementation of its contract: PyTorch reference and
export, ONNX Runtime CPU op, decomposition into standard ops, Python TensorRT plugin."""

from .bc_decode.custom_op import bc_decode  # the torch.library ops; these names shadow the subpackage attributes
from .domain import DOMAIN, STANDARD_DOMAINS, VERSION
from .window_attention.custom_op import window_attention

__all__ = ["DOMAIN", "STANDARD_DOMAINS", "VERSION", "bc_decode", "window_attention"]
