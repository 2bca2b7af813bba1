"""`ntc::window_attention` as a torch.library custom op, for user modules exported with torch.export: the eager kernel
is the PyTorch reference (the ntc::WindowAttention v1 contract), the fake kernel gives torch.export the output's
shape and dtype, and the ONNX translation (ops/onnx_translations.py) emits one `ntc::WindowAttention` v1 node, as the
"plugin" lowering of our own modules does."""

import torch

from .contract import check_fields
from .reference import attention_decomposed, relative_position_index

OP_NAME = "ntc::window_attention"


@torch.library.custom_op(OP_NAME, mutates_args=())
def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias_table: torch.Tensor,
                     mask: torch.Tensor, heads: int, window: int, shift: int, scale: float) -> torch.Tensor:
    """softmax(scale q k^T + relative-position bias + mask) v over windows: q, k, v [BW, heads, T, hd] (T =
    window^2), bias_table [(2 window - 1)^2, heads], mask [nW, T, T] additive (BW a multiple of nW) -> [BW, T, C]."""
    check_fields({"heads": heads, "window": window, "shift": shift, "scale": scale}, OP_NAME)
    t = window * window
    bias = bias_table[relative_position_index(window).flatten()].reshape(t, t, heads).permute(2, 0, 1)
    return attention_decomposed(q, k, v, bias.to(q.dtype), mask.to(q.dtype), scale)


@window_attention.register_fake
def _window_attention_fake(q, k, v, bias_table, mask, heads, window, shift, scale):
    check_fields({"heads": heads, "window": window, "shift": shift, "scale": scale}, OP_NAME)
    return q.new_empty((q.shape[0], q.shape[2], q.shape[1] * q.shape[3]))
