"""BC4/BC5 block encoder: both palette modes, least-squares endpoint refinement, endpoint neighbourhood search.

Works on all blocks at once with numpy. Palette values follow bcdec (integer interpolation, truncating division),
so `decode_bc4_blocks` predicts exactly what a bcdec-class decoder returns.
"""

import numpy as np

# Interpolation weight of the second endpoint for palette index k, per mode.
_T8 = np.array([0, 7, 1, 2, 3, 4, 5, 6], np.int64)  # e0 > e1: value = ((7 - t) * e0 + t * e1) // 7
_T6 = np.array([0, 5, 1, 2, 3, 4], np.int64)  # e0 <= e1: value = ((5 - t) * e0 + t * e1) // 5, then 0, 255

_REFINE_ITERS = 3
_SEARCH = ((16, 4, 2), (2, 1, 4))  # (radius, step, rounds) of the endpoint searches


def palette(e0: np.ndarray, e1: np.ndarray) -> np.ndarray:
    """Eight palette values [..., 8] (int64) for endpoint bytes e0, e1 of any matching shape."""
    e0 = np.asarray(e0, np.int64)[..., None]
    e1 = np.asarray(e1, np.int64)[..., None]
    p8 = ((7 - _T8) * e0 + _T8 * e1) // 7
    p6 = ((5 - _T6) * e0 + _T6 * e1) // 5
    p6 = np.concatenate([p6, np.zeros_like(e0), np.full_like(e0, 255)], axis=-1)
    return np.where(e0 > e1, p8, p6)


def _assign(x: np.ndarray, pal: np.ndarray):
    """Nearest palette index per pixel. x [..., 16] float, pal [..., 8] -> (indices [..., 16], sse [...])."""
    d = (x[..., :, None] - pal[..., None, :].astype(np.float32)) ** 2
    idx = np.argmin(d, axis=-1)
    return idx, np.take_along_axis(d, idx[..., None], axis=-1)[..., 0].sum(-1)


def _least_squares(x, idx, e0, e1, six_mode: bool):
    """Endpoints minimising the error for a fixed index assignment; old endpoints where the system is singular."""
    if six_mode:
        used = idx < 6
        t = np.where(used, _T6[np.minimum(idx, 5)] / 5.0, 0.0)
    else:
        used = np.ones(idx.shape, bool)
        t = _T8[idx] / 7.0
    w = used.astype(np.float64)
    s = 1.0 - t
    a11, a12, a22 = (w * s * s).sum(-1), (w * s * t).sum(-1), (w * t * t).sum(-1)
    b1, b2 = (w * s * x).sum(-1), (w * t * x).sum(-1)
    det = a11 * a22 - a12 * a12
    ok = np.abs(det) > 1e-9
    safe = np.where(ok, det, 1.0)
    n0 = np.where(ok, (a22 * b1 - a12 * b2) / safe, e0)
    n1 = np.where(ok, (a11 * b2 - a12 * b1) / safe, e1)
    return np.clip(np.rint(n0), 0, 255).astype(np.int64), np.clip(np.rint(n1), 0, 255).astype(np.int64)


def _order(lo, hi, six_mode: bool):
    """Endpoint bytes in the order that selects the mode: e0 > e1 for 8 values, e0 <= e1 for 6 values."""
    a, b = np.minimum(lo, hi), np.maximum(lo, hi)
    if six_mode:
        return a, b
    # 8-value mode needs distinct endpoints; widen a flat pair by one step.
    flat = a == b
    b = np.where(flat & (b < 255), b + 1, b)
    a = np.where(flat & (a == b), a - 1, a)
    return b, a


def _encode_mode(x: np.ndarray, six_mode: bool, thorough: bool):
    """Best (e0, e1, indices, sse) per block for one palette mode."""
    if six_mode:
        # Pixels at the extremes are served by the fixed 0/255 entries; fit the interpolated range to the rest.
        inner = (x > 0) & (x < 255)
        lo = np.where(inner, x, 255.0).min(-1)
        hi = np.where(inner, x, 0.0).max(-1)
        none = ~inner.any(-1)
        lo, hi = np.where(none, 0, lo), np.where(none, 0, hi)
    else:
        lo, hi = x.min(-1), x.max(-1)
    e0, e1 = _order(np.rint(lo).astype(np.int64), np.rint(hi).astype(np.int64), six_mode)
    idx, sse = _assign(x, palette(e0, e1))
    if not thorough:
        return e0, e1, idx, sse
    for _ in range(_REFINE_ITERS):
        n0, n1 = _least_squares(x, idx, e0, e1, six_mode)
        n0, n1 = _order(n0, n1, six_mode)
        nidx, nsse = _assign(x, palette(n0, n1))
        better = nsse < sse
        e0, e1 = np.where(better, n0, e0), np.where(better, n1, e1)
        idx, sse = np.where(better[:, None], nidx, idx), np.where(better, nsse, sse)
    # Local search: a coarse grid first (escapes the nearest local minimum), then unit steps while they help.
    for radius, step, rounds in _SEARCH:
        for _ in range(rounds):
            e0, e1, idx, sse, moved = _neighbourhood_step(x, e0, e1, idx, sse, six_mode, radius, step)
            if not moved:
                break
    return e0, e1, idx, sse


def _neighbourhood_step(x, e0, e1, idx, sse, six_mode: bool, radius: int, step: int):
    """Best endpoint pair on the grid of `step` within `radius` of (e0, e1) per block, if better than the current."""
    r = np.arange(-radius, radius + 1, step)
    d0, d1 = np.meshgrid(r, r, indexing="ij")
    c0 = np.clip(e0[:, None] + d0.ravel()[None], 0, 255)
    c1 = np.clip(e1[:, None] + d1.ravel()[None], 0, 255)
    valid = (c0 <= c1) if six_mode else (c0 > c1)
    cidx, csse = _assign(x[:, None, :], palette(c0, c1))
    csse = np.where(valid, csse, np.inf)
    best = np.argmin(csse, axis=1)
    rows = np.arange(len(x))
    bsse = csse[rows, best]
    better = bsse < sse
    e0 = np.where(better, c0[rows, best], e0)
    e1 = np.where(better, c1[rows, best], e1)
    idx = np.where(better[:, None], cidx[rows, best], idx)
    return e0, e1, idx, np.where(better, bsse, sse), bool(better.any())


def encode_bc4_blocks(x: np.ndarray, quality: str = "thorough") -> np.ndarray:
    """x [N, 16] float in [0, 255] (pixel order row-major in the block) -> [N, 8] uint8 BC4 blocks."""
    x = np.asarray(x, np.float32)
    thorough = quality == "thorough"
    cands = [_encode_mode(x, False, thorough)]
    if thorough:
        cands.append(_encode_mode(x, True, thorough))
    e0, e1, idx, sse = cands[0]
    for c0, c1, cidx, csse in cands[1:]:
        better = csse < sse
        e0, e1 = np.where(better, c0, e0), np.where(better, c1, e1)
        idx, sse = np.where(better[:, None], cidx, idx), np.where(better, csse, sse)
    return pack_bc4(e0, e1, idx)


def pack_bc4(e0, e1, idx) -> np.ndarray:
    """Endpoint bytes and 3-bit indices [N, 16] -> [N, 8] uint8 blocks (indices little-endian after the endpoints)."""
    bits = (idx.astype(np.uint64) << (3 * np.arange(16, dtype=np.uint64))).sum(-1, dtype=np.uint64)
    word = np.asarray(e0, np.uint64) | (np.asarray(e1, np.uint64) << np.uint64(8)) | (bits << np.uint64(16))
    return word.astype("<u8").view(np.uint8).reshape(-1, 8)


def decode_bc4_blocks(blocks: np.ndarray) -> np.ndarray:
    """[N, 8] uint8 BC4 blocks -> [N, 16] uint8 values (bcdec rounding); used to check predictions."""
    word = np.ascontiguousarray(blocks, np.uint8).view("<u8")[:, 0]
    e0 = (word & np.uint64(0xFF)).astype(np.int64)
    e1 = ((word >> np.uint64(8)) & np.uint64(0xFF)).astype(np.int64)
    shifts = np.uint64(16) + np.uint64(3) * np.arange(16, dtype=np.uint64)
    idx = ((word[:, None] >> shifts[None]) & np.uint64(7)).astype(np.int64)
    return np.take_along_axis(palette(e0, e1), idx, axis=-1).astype(np.uint8)
