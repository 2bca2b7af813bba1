"""Token grids: patch tokens [B, h, w, D] on any grid, and the padding compressors apply to reach their block
multiple (cropped back after decoding; payloads record the image's own grid)."""

import numpy as np
import torch

from ..util.errors import NtcError


def grid_tokens(tokens: torch.Tensor):
    """(tokens [B, h*w, D], h, w) of patch tokens given on their grid [B, h, w, D] (any h, w: traced sizes stay
    symbolic under torch.export) or flat [B, N, D] on a square grid (eager callers only)."""
    if tokens.dim() == 4:
        b, h, w, d = tokens.shape
        return tokens.reshape(b, h * w, d), h, w
    side = int(round(tokens.shape[1] ** 0.5))
    return tokens, side, side


def as_grid(tokens, grid: tuple[int, int] | None = None):
    """Patch tokens [N, h*w, D] (numpy or torch) -> [N, h, w, D] on `grid` (square when None); [N, h, w, D] as is."""
    if tokens.ndim == 4:
        return tokens
    h, w = grid if grid is not None else (int(round(tokens.shape[1] ** 0.5)),) * 2
    if tokens.ndim != 3 or h * w != tokens.shape[1]:
        raise NtcError(f"{tokens.shape[1] if tokens.ndim == 3 else list(tokens.shape)} patch tokens do not form "
                       f"{'a square grid (give the grid h x w)' if grid is None else f'a {h}x{w} grid'}")
    return tokens.reshape(tokens.shape[0], h, w, tokens.shape[2])


def grid_pair(grid) -> tuple[int, int]:
    """A grid given as a side (square) or (h, w) -> (h, w)."""
    return (int(grid), int(grid)) if isinstance(grid, (int, np.integer)) else (int(grid[0]), int(grid[1]))


def regroup(x: torch.Tensor, *shape) -> torch.Tensor:
    """`x.reshape(*shape)` through a contiguous copy: reshaping a permuted view lets torch.export guard on sizes of
    1 (a one-window or one-cell grid), which would narrow the exported grid."""
    return x.clone(memory_format=torch.contiguous_format).reshape(*shape)


def grid_of(tokens, what: str, dim: int | None = None) -> tuple[int, int]:
    """(h, w) of patch tokens [N, h, w, D] or [N, h*w, D] on a square grid (a payload's grid); NtcError otherwise."""
    shape = list(tokens.shape)
    if tokens.ndim == 4 and min(shape[1:3]) >= 1 and (dim is None or shape[3] == dim):
        return shape[1], shape[2]
    side = int(round(shape[1] ** 0.5)) if tokens.ndim == 3 else 0
    if tokens.ndim != 3 or side == 0 or side * side != shape[1] or (dim is not None and shape[2] != dim):
        raise NtcError(f"{what}: expected patch tokens [N, h, w, {dim or 'D'}] (or [N, h*w, D] on a square grid), "
                       f"got {shape}")
    return side, side


def padded(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _edge_positions(n, multiple: int) -> torch.Tensor:
    """0..n-1 then n-1 repeated, up to a multiple of `multiple` (ints or traced sizes alike)."""
    pos = torch.arange((n + multiple - 1) // multiple * multiple)
    return torch.where(pos < n, pos, n - 1)


def pad_grid(tokens: torch.Tensor, multiple: int) -> torch.Tensor:
    """[B, h, w, D] -> [B, hp, wp, D], each side up to a multiple of `multiple` by repeating the last row/column
    (edge values code cheaply and keep windowed attention near the real tokens; the padding is cropped off).
    Always a gather, never a branch on the size: exported graphs take every grid."""
    if multiple == 1:
        return tokens
    rows, cols = _edge_positions(tokens.shape[1], multiple), _edge_positions(tokens.shape[2], multiple)
    return tokens.index_select(1, rows).index_select(2, cols)


def crop_grid(tokens, padded_grid: tuple[int, int], grid: tuple[int, int]):
    """Decoded tokens [N, hp*wp, D] on the padded grid -> [N, h*w, D] of the image's own grid (numpy or torch)."""
    (hp, wp), (h, w) = padded_grid, grid
    if (hp, wp) == (h, w):
        return tokens
    n, d = tokens.shape[0], tokens.shape[-1]
    return tokens.reshape(n, hp, wp, d)[:, :h, :w].reshape(n, h * w, d)


def merge_order(h: int, w: int, k: int = 2) -> np.ndarray:
    """order[s] = row-major index of the grid token at Qwen-VL processor sequence position s (k x k merge windows
    row-major, each window's tokens row-major), so that `processor_tokens = row_major_tokens[:, order]` and
    `row_major_tokens = processor_tokens[:, np.argsort(order)]`."""
    if h % k or w % k:
        raise NtcError(f"a {h}x{w} token grid does not split into {k}x{k} merge windows")
    return np.arange(h * w).reshape(h // k, k, w // k, k).transpose(0, 2, 1, 3).reshape(-1)
