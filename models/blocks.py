"""Swin-style window attention blocks over a row-major token grid [B, h*w, C].

The grid is padded up to a multiple of the window (padded keys masked out), optionally cyclically shifted with the
Swin region mask, partitioned into windows, attended with a learned relative-position bias, and cropped back.
`h`, `w` may be python ints or traced 0-d tensors, so ONNX exports keep the grid dynamic. While an ONNX export runs
inside `ntc_export.ops.window_attention.export_context(mode)`, the attention core is emitted in the chosen lowering.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.tracing import exporting
from ..ops.window_attention.contract import MASKED
from ..ops.window_attention.reference import attention_decomposed, relative_position_index  # noqa: F401
from .grid import regroup


def padded_size(n, window: int):
    """n rounded up to a multiple of `window` (int or traced tensor)."""
    return (n + window - 1) // window * window


def _axis_labels(n, n_pad, window: int, shift: int):
    """Per position of the (shifted) padded axis: Swin region label and whether it holds a real token."""
    pos = torch.arange(n_pad)
    if shift == 0:
        return torch.zeros_like(pos), pos < n
    label = (pos >= n_pad - window).long() + (pos >= n_pad - shift).long()
    rolled = pos + shift  # rolled position p holds original (p + shift) mod n_pad; p + shift < 2 n_pad
    rolled = torch.where(rolled >= n_pad, rolled - n_pad, rolled)  # not `%`: torch.export's ONNX needs int divisors
    return label, rolled < n


def window_partition(x: torch.Tensor, hp, wp, window: int) -> torch.Tensor:
    """[B, hp, wp, C] -> [B*nW, window*window, C], windows row-major within each batch item."""
    b, c = x.shape[0], x.shape[-1]
    x = x.reshape(b, hp // window, window, wp // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return regroup(x, -1, window * window, c)


def window_reverse(x: torch.Tensor, b, hp, wp, window: int) -> torch.Tensor:
    """[B*nW, window*window, C] -> [B, hp, wp, C] (inverse of window_partition)."""
    c = x.shape[-1]
    x = x.reshape(b, hp // window, wp // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return regroup(x, b, hp, wp, c)


def window_mask(h, w, window: int, shift: int) -> torch.Tensor:
    """[nW, T, T] float32 additive mask: MASKED where keys are padding or in another Swin shift region
    (the diagonal always allowed)."""
    hp, wp = padded_size(h, window), padded_size(w, window)
    row_label, row_real = _axis_labels(h, hp, window, shift)
    col_label, col_real = _axis_labels(w, wp, window, shift)
    label = row_label[:, None] * 3 + col_label[None, :]
    real = row_real[:, None] & col_real[None, :]
    label = window_partition(label[None, :, :, None], hp, wp, window)[..., 0]  # [nW, T]
    real = window_partition(real[None, :, :, None], hp, wp, window)[..., 0]
    allowed = (label[:, :, None] == label[:, None, :]) & real[:, None, :]
    # a padded query may see itself, so no row is fully masked (finite, well-conditioned rows in every kernel)
    allowed = allowed | torch.eye(window * window, dtype=torch.bool)
    return torch.where(allowed, torch.zeros((), dtype=torch.float32), torch.full((), MASKED))


class WindowAttention(nn.Module):
    """Windowed multi-head self-attention (Swin W-MSA / SW-MSA) with relative-position bias, any grid size."""

    def __init__(self, dim: int, heads: int, window: int, shift: int = 0, rel_pos_bias: bool = True):
        super().__init__()
        from ..util.errors import NtcError

        if dim % heads:
            raise NtcError(f"WindowAttention: dim {dim} is not a multiple of heads {heads}")
        if window < 1 or not 0 <= shift < window:
            raise NtcError(f"WindowAttention: need window >= 1 and 0 <= shift < window (got {window}, {shift})")
        self.dim, self.heads, self.window, self.shift = dim, heads, window, shift
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        t2 = (2 * window - 1) ** 2
        if rel_pos_bias:
            self.relative_position_bias_table = nn.Parameter(torch.zeros(t2, heads))
            nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        else:  # a zero table keeps one code path (and the plugin contract) for both variants
            self.register_buffer("relative_position_bias_table", torch.zeros(t2, heads), persistent=False)
        self.register_buffer("relative_position_index", relative_position_index(window).flatten(), persistent=False)

    def relative_bias(self) -> torch.Tensor:
        """[heads, T, T] bias gathered from the table."""
        t = self.window * self.window
        return self.relative_position_bias_table[self.relative_position_index].reshape(t, t, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, h, w) -> torch.Tensor:
        b, _, c = x.shape
        win, shift = self.window, self.shift
        hp, wp = padded_size(h, win), padded_size(w, win)
        qkv = self.qkv(x).reshape(b, h, w, 3 * c)
        qkv = F.pad(qkv, (0, 0, 0, wp - w, 0, hp - h))  # padded positions are masked as keys, cropped as queries
        if shift:
            qkv = torch.roll(qkv, shifts=(-shift, -shift), dims=(1, 2))
        q, k, v = window_partition(qkv, hp, wp, win).chunk(3, dim=-1)  # each [BW, T, C]
        mask = window_mask(h, w, win, shift).to(q.dtype)
        out = self._attend(q, k, v, mask)
        out = window_reverse(out, b, hp, wp, win)
        if shift:
            out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
        if torch.compiler.is_exporting():  # gathered, not a view: torch.export would guard on hp == h to reshape
            out = out.index_select(1, torch.arange(h)).index_select(2, torch.arange(w))
        else:
            out = out[:, :h, :w, :]
        return self.proj(out.reshape(b, -1, c))

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[BW, T, C] -> [BW, heads, T, head_dim]."""
        return x.reshape(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def _attend(self, q, k, v, mask) -> torch.Tensor:
        """[BW, T, C] q, k, v -> [BW, T, C], in the export lowering when one is active."""
        if exporting():
            from ..ops.window_attention import lowering

            out = lowering.emit(self, q, k, v, mask)
            if out is not None:
                return out
        bias = self.relative_bias().to(q.dtype)
        return attention_decomposed(self.split_heads(q), self.split_heads(k), self.split_heads(v), bias, mask,
                                    self.scale)


class Mlp(nn.Module):
    """Transformer MLP: Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm Swin block: x + attn(norm1(x)); x + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, window: int, shift: int = 0, mlp_ratio: float = 4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window, shift)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, h, w) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.mlp(self.norm2(x))
