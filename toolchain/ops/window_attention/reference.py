"""The ntc::WindowAttention v1 contract in PyTorch: the relative-position index and the MatMul-Softmax-MatMul core
(what the "decomposed" lowering exports and what the plugin's tracing path runs)."""

import torch


def relative_position_index(window: int) -> torch.Tensor:
    """[T, T] int64: Swin index into the [(2w-1)^2, heads] table for query i=(yi,xi), key j=(yj,xj)."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    y, x = ys.flatten(), xs.flatten()
    dy = y[:, None] - y[None, :] + window - 1
    dx = x[:, None] - x[None, :] + window - 1
    return dy * (2 * window - 1) + dx



def attention_decomposed(q, k, v, bias, mask, scale: float) -> torch.Tensor:
    """softmax(scale q k^T + bias + mask[b % nW]) v: q,k,v [BW, heads, T, hd], bias [heads, T, T], mask [nW, T, T]
    -> [BW, T, heads*hd]. MatMul-Softmax-MatMul, the lowering that runs everywhere."""
    bw, heads, t, hd = q.shape
    attn = (q * scale) @ k.transpose(-2, -1) + bias.unsqueeze(0)
    n_windows = mask.shape[0]
    attn = attn.reshape(-1, n_windows, heads, t, t) + mask.unsqueeze(1).unsqueeze(0)
    attn = attn.reshape(-1, heads, t, t).softmax(dim=-1)
    return (attn @ v).transpose(1, 2).reshape(bw, t, heads * hd)
