"""`ntc::bc_decode` as a torch.library custom op, for user modules exported with torch.export: the eager kernel is
the PyTorch reference, the fake kernel gives torch.export the output's shape and dtype, and the ONNX translation
(`onnx_translation`) emits the same one `ntc::BcDecode` v1 node as the legacy exporter's symbolic."""

import torch

from ...codec.formats import CHANNELS
from .torch_op import TORCH_DTYPES, bc_decode_reference, check_attributes

OP_NAME = "ntc::bc_decode"


@torch.library.custom_op(OP_NAME, mutates_args=())
def bc_decode(blocks: torch.Tensor, fmt: str, layout: str = "tokens", dtype: str = "float32") -> torch.Tensor:
    """Decode INT32 BC blocks [B, by, bx, W] to texels: tokens [B, 16*by*bx, C] or nchw [B, C, 4*by, 4*bx]."""
    return bc_decode_reference(blocks, fmt, layout, dtype)


@bc_decode.register_fake
def _bc_decode_fake(blocks, fmt, layout="tokens", dtype="float32"):
    check_attributes(fmt, layout, dtype)
    b, by, bx = blocks.shape[0], blocks.shape[1], blocks.shape[2]
    shape = (b, CHANNELS[fmt], 4 * by, 4 * bx) if layout == "nchw" else (b, 16 * by * bx, CHANNELS[fmt])
    return blocks.new_empty(shape, dtype=TORCH_DTYPES[dtype])
