"""Differentiable BC4/BC5 simulation for training: what a min/max BC4 encoder + decoder do to values in [0, 1].

Per 4x4 block and channel: endpoints e0 = round(255 max), e1 = round(255 min) (8-bit), the 8-value palette
((7 - t) e0 + t e1) // 7 (integer, as the decoders compute it; flat blocks decode to e0 in either palette mode),
each texel takes the nearest palette entry (first on ties), output palette / 255. The backward pass is straight
through (identity). BC5 is two independent BC4 channels, so both formats use the same per-channel simulation.
"""

import torch

_T8 = (0, 7, 1, 2, 3, 4, 5, 6)  # weight of e1 (out of 7) for palette index k when e0 > e1


def _to_blocks(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] (H, W multiples of 4) -> [B, C, H/4, W/4, 16], texels row-major in each block."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 4, 4, w // 4, 4).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h // 4, w // 4, 16)


def _from_blocks(x: torch.Tensor) -> torch.Tensor:
    b, c, by, bx, _ = x.shape
    return x.reshape(b, c, by, bx, 4, 4).permute(0, 1, 2, 4, 3, 5).reshape(b, c, by * 4, bx * 4)


@torch.no_grad()
def bc4_quantize_blocks(v255: torch.Tensor) -> torch.Tensor:
    """Values in [0, 255] [..., 16] -> decoded values [..., 16] (float, integers 0..255) of the min/max encoder."""
    e0 = torch.round(v255.amax(-1, keepdim=True))
    e1 = torch.round(v255.amin(-1, keepdim=True))
    t = torch.tensor(_T8, dtype=v255.dtype, device=v255.device)
    palette = torch.floor(((7 - t) * e0 + t * e1) / 7 + 1e-4)  # exact integer division for values < 2^11
    idx = (v255[..., :, None] - palette[..., None, :]).abs().argmin(-1)
    return torch.gather(palette, -1, idx)


def bc4_simulate(planes: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] in [0, 1] (H, W multiples of 4) -> BC4-quantised values, straight-through gradient."""
    if planes.shape[-1] % 4 or planes.shape[-2] % 4:
        raise ValueError(f"bc4_simulate needs H, W multiples of 4, got {list(planes.shape)}")
    x = planes.float().clamp(0, 1)
    q = _from_blocks(bc4_quantize_blocks(_to_blocks(x) * 255.0)) / 255.0
    return q.to(planes.dtype) + (planes - planes.detach())  # forward exactly q, gradient identity
