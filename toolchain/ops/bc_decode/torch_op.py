"""ntc::BcDecode v1 inside PyTorch modules: eager decode, and the custom ONNX node under torch.onnx export.

BC4/BC5 decode here in pure torch integer ops, an implementation independent of the C++ host decoder (the tests hold
them bit-exact); BC1/BC6H/BC7 go through the host decoder. Under the legacy exporter `BcDecodeFunction.symbolic`
emits one `ntc::BcDecode` node with the contract's string attributes.
"""

import numpy as np
import torch

from ...codec.formats import CHANNELS, FORMATS, WORDS
from ...util.errors import NtcError
from ..domain import DOMAIN, VERSION
from ..tracing import exporting
from .contract import DTYPES, LAYOUTS
from .contract import OP as PLUGIN_OP

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16}

# BC4 palette: weight of endpoint 1 per index (8-value mode out of 7, 6-value mode out of 5; 6 -> 0, 7 -> 255).
_W8 = (0, 7, 1, 2, 3, 4, 5, 6)
_W6 = (0, 5, 1, 2, 3, 4, 0, 0)


def check_attributes(fmt: str, layout: str, dtype: str) -> None:
    if fmt not in FORMATS:
        raise NtcError(f"BcDecode: unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if layout not in LAYOUTS:
        raise NtcError(f"BcDecode: unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if dtype not in DTYPES:
        raise NtcError(f"BcDecode: unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")


def check_blocks(blocks: torch.Tensor, fmt: str) -> None:
    """Clear error unless `blocks` is INT32 [B, by, bx, W] with the format's W."""
    if blocks.dtype != torch.int32:
        raise NtcError(f"BcDecode: blocks must be int32, got {blocks.dtype}")
    w = WORDS[fmt]
    if blocks.dim() != 4 or blocks.shape[-1] != w:
        raise NtcError(f"BcDecode: {fmt} blocks must be INT32 [B, by, bx, {w}], got shape {list(blocks.shape)}")


def bc4_texels(words: torch.Tensor) -> torch.Tensor:
    """INT32 [..., 2] BC4 blocks -> int64 texel values 0..255 [..., 16] (row-major in the block)."""
    lo = words[..., 0].to(torch.int64) & 0xFFFFFFFF
    hi = words[..., 1].to(torch.int64) & 0xFFFFFFFF
    e0 = (lo & 0xFF)[..., None]
    e1 = ((lo >> 8) & 0xFF)[..., None]
    index_bits = (lo >> 16) | (hi << 16)  # 48 bits: 16 x 3-bit indices
    shifts = torch.arange(16, dtype=torch.int64, device=words.device) * 3
    idx = (index_bits[..., None] >> shifts) & 7
    w8 = torch.tensor(_W8, dtype=torch.int64, device=words.device)
    w6 = torch.tensor(_W6, dtype=torch.int64, device=words.device)
    eight = ((7 - w8) * e0 + w8 * e1) // 7
    six = ((5 - w6) * e0 + w6 * e1) // 5
    six = torch.cat([six[..., :6], torch.zeros_like(e0), torch.full_like(e0, 255)], dim=-1)
    palette = torch.where(e0 > e1, eight, six)  # [..., 8]
    return torch.gather(palette, -1, idx)


def _arrange(texels: torch.Tensor, layout: str) -> torch.Tensor:
    """[B, by, bx, 16, C] block texels -> nchw [B, C, 4by, 4bx] or tokens [B, 16*by*bx, C]."""
    b, by, bx, _, c = texels.shape
    img = texels.reshape(b, by, bx, 4, 4, c).permute(0, 1, 3, 2, 4, 5).reshape(b, 4 * by, 4 * bx, c)
    return img.permute(0, 3, 1, 2).contiguous() if layout == "nchw" else img.reshape(b, -1, c)


def _scale(values: torch.Tensor, fmt: str, dtype: str) -> torch.Tensor:
    """UNORM bytes -> value/255 computed in fp32 (then rounded once to fp16); BC6H halves widened exactly."""
    if fmt.startswith("bc6h"):
        return values.to(TORCH_DTYPES[dtype])
    return (values.to(torch.float32) / 255.0).to(TORCH_DTYPES[dtype])


def _host_texels(blocks: torch.Tensor, fmt: str) -> torch.Tensor:
    """Any format through the host decoder -> [B, by, bx, 16, C] (uint8 values or float16 for BC6H)."""
    from ...codec.decode import decode, int32_to_blocks

    b, by, bx, _ = blocks.shape
    raw = int32_to_blocks(blocks.detach().cpu().numpy())
    c = CHANNELS[fmt]
    out = []
    for i in range(b):
        img = decode(raw[i], fmt, 4 * by, 4 * bx).reshape(4 * by, 4 * bx, c)
        out.append(img.reshape(by, 4, bx, 4, c).transpose(0, 2, 1, 3, 4).reshape(by, bx, 16, c))
    arr = np.stack(out) if out else np.zeros((0, by, bx, 16, c), np.float16 if fmt.startswith("bc6h") else np.uint8)
    t = torch.from_numpy(arr.astype(np.float16) if fmt.startswith("bc6h") else arr.astype(np.int64))
    return t.to(blocks.device)


def bc_decode_reference(blocks: torch.Tensor, fmt: str, layout: str = "tokens", dtype: str = "float32"
                        ) -> torch.Tensor:
    """The ntc::BcDecode v1 contract in PyTorch (eager)."""
    check_attributes(fmt, layout, dtype)
    check_blocks(blocks, fmt)
    if fmt == "bc4":
        texels = bc4_texels(blocks)[..., None]
    elif fmt == "bc5":
        texels = torch.stack([bc4_texels(blocks[..., 0:2]), bc4_texels(blocks[..., 2:4])], dim=-1)
    else:
        texels = _host_texels(blocks, fmt)
    return _scale(_arrange(texels, layout), fmt, dtype)


class BcDecodeFunction(torch.autograd.Function):
    """Decode in eager mode; one `ntc::BcDecode` node under the legacy ONNX exporter."""

    @staticmethod
    def forward(ctx, blocks, fmt, layout, dtype):
        return bc_decode_reference(blocks, fmt, layout, dtype)

    @staticmethod
    def backward(ctx, grad):
        return None, None, None, None  # integer block data has no gradient

    @staticmethod
    def symbolic(g, blocks, fmt, layout, dtype):
        out = g.op(f"{DOMAIN}::{PLUGIN_OP}", blocks, format_s=fmt, layout_s=layout, dtype_s=dtype,
                   plugin_version_s=VERSION)
        c = CHANNELS[fmt]
        sizes = [None, c, None, None] if layout == "nchw" else [None, None, c]
        out.setType(blocks.type().with_dtype(TORCH_DTYPES[dtype]).with_sizes(sizes))
        return out


def bc_decode_op(blocks_int32: torch.Tensor, fmt: str, layout: str = "tokens", dtype: str = "float32"
                 ) -> torch.Tensor:
    """ntc::BcDecode v1 for use inside a module's forward (see module docstring)."""
    check_attributes(fmt, layout, dtype)
    if torch.compiler.is_exporting():  # torch.export: the torch.library op, translated to the same node
        return torch.ops.ntc.bc_decode(blocks_int32, fmt, layout, dtype)
    if not exporting():
        check_blocks(blocks_int32, fmt)
    return BcDecodeFunction.apply(blocks_int32, fmt, layout, dtype)
