"""BC6H (UF16/SF16) block encoder, vectorized over blocks with numpy.

"thorough": all 14 modes; the two-region modes (1-10) over the best few of the 32 partitions (ranked by how well
two lines fit the block); endpoints start on each region's principal axis and are refined by least squares on the
index assignment, re-quantized to the mode's precision each round; the lowest error wins.
"fast": mode 11 (one region, 10-bit endpoints, no transform) with per-channel min/max endpoints.

The thorough search minimises either the squared value error ("linear", for token latents) or the squared error of
the half-float bit patterns ("relative": roughly logarithmic, for HDR images); the fast encoder always works on bit
patterns. Every block's decoded value is predicted exactly (bcdec semantics) and can be returned with the blocks.
"""

import numpy as np

# 2-region partitions (D3D BC6H/BC7 table, first 32): bit i set = pixel i belongs to region 1.
_PARTITION_MASKS = (
    0xCCCC, 0x8888, 0xEEEE, 0xECC8, 0xC880, 0xFEEC, 0xFEC8, 0xEC80, 0xC800, 0xFFEC, 0xFE80, 0xE800, 0xFFE8, 0xFF00,
    0xFFF0, 0xF000, 0xF710, 0x008E, 0x7100, 0x08CE, 0x008C, 0x7310, 0x3100, 0x8CCE, 0x088C, 0x3110, 0x6666, 0x366C,
    0x17E8, 0x0FF0, 0x718E, 0x399C,
)
PARTITIONS = ((np.array(_PARTITION_MASKS)[:, None] >> np.arange(16)[None]) & 1).astype(np.int64)  # [32, 16]
# Anchor (fix-up) pixel of region 1 per partition; its index is stored with one bit less.
ANCHOR2 = np.array([15] * 16 + [15, 2, 8, 2, 2, 8, 8, 15, 2, 8, 2, 2, 8, 8, 2, 2], np.int64)

WEIGHTS3 = np.array([0, 9, 18, 27, 37, 46, 55, 64], np.int64)
WEIGHTS4 = np.array([0, 4, 9, 13, 17, 21, 26, 30, 34, 38, 43, 47, 51, 55, 60, 64], np.int64)


class Mode:
    """One BC6H mode: header value, regions, endpoint/delta precision and the bit layout of its header."""

    def __init__(self, number, value, regions, epb, delta, transformed, layout):
        self.number, self.value, self.regions, self.epb = number, value, regions, epb
        self.delta, self.transformed = np.array(delta), transformed
        self.fields = _parse_layout(layout + (" d[4:0]" if regions == 2 else ""))
        assert len(self.fields) == (82 if regions == 2 else 65), (number, len(self.fields))


def _parse_layout(layout: str):
    """'r0[9:0] r0[10:15] g2[4]' -> [(field, bit), ...] in stream order (low bits first; [a:b] runs from b to a)."""
    out = []
    for tok in layout.split():
        name, rng = tok[:-1].split("[")
        hi, lo = (int(v) for v in rng.split(":")) if ":" in rng else (int(rng), int(rng))
        step = 1 if hi >= lo else -1
        out += [(name, b) for b in range(lo, hi + step, step)]
    return out


_TAIL5 = "g3[4] g2[3:0] g1[4:0] b3[0] g3[3:0] b1[4:0] b3[1] b2[3:0] r2[4:0] b3[2] r3[4:0] b3[3]"
MODES = {
    1: Mode(1, 0x00, 2, 10, (5, 5, 5), True,
            "m[1:0] g2[4] b2[4] b3[4] r0[9:0] g0[9:0] b0[9:0] r1[4:0] " + _TAIL5),
    2: Mode(2, 0x01, 2, 7, (6, 6, 6), True,
            "m[1:0] g2[5] g3[4] g3[5] r0[6:0] b3[0] b3[1] b2[4] g0[6:0] b2[5] b3[2] g2[4] b0[6:0] b3[3] b3[5] b3[4] "
            "r1[5:0] g2[3:0] g1[5:0] g3[3:0] b1[5:0] b2[3:0] r2[5:0] r3[5:0]"),
    3: Mode(3, 0x02, 2, 11, (5, 4, 4), True,
            "m[4:0] r0[9:0] g0[9:0] b0[9:0] r1[4:0] r0[10] g2[3:0] g1[3:0] g0[10] b3[0] g3[3:0] b1[3:0] b0[10] b3[1] "
            "b2[3:0] r2[4:0] b3[2] r3[4:0] b3[3]"),
    4: Mode(4, 0x06, 2, 11, (4, 5, 4), True,
            "m[4:0] r0[9:0] g0[9:0] b0[9:0] r1[3:0] r0[10] g3[4] g2[3:0] g1[4:0] g0[10] g3[3:0] b1[3:0] b0[10] b3[1] "
            "b2[3:0] r2[3:0] b3[0] b3[2] r3[3:0] g2[4] b3[3]"),
    5: Mode(5, 0x0A, 2, 11, (4, 4, 5), True,
            "m[4:0] r0[9:0] g0[9:0] b0[9:0] r1[3:0] r0[10] b2[4] g2[3:0] g1[3:0] g0[10] b3[0] g3[3:0] b1[4:0] b0[10] "
            "b2[3:0] r2[3:0] b3[1] b3[2] r3[3:0] b3[4] b3[3]"),
    6: Mode(6, 0x0E, 2, 9, (5, 5, 5), True,
            "m[4:0] r0[8:0] b2[4] g0[8:0] g2[4] b0[8:0] b3[4] r1[4:0] " + _TAIL5),
    7: Mode(7, 0x12, 2, 8, (6, 5, 5), True,
            "m[4:0] r0[7:0] g3[4] b2[4] g0[7:0] b3[2] g2[4] b0[7:0] b3[3] b3[4] r1[5:0] g2[3:0] g1[4:0] b3[0] g3[3:0] "
            "b1[4:0] b3[1] b2[3:0] r2[5:0] r3[5:0]"),
    8: Mode(8, 0x16, 2, 8, (5, 6, 5), True,
            "m[4:0] r0[7:0] b3[0] b2[4] g0[7:0] g2[5] g2[4] b0[7:0] g3[5] b3[4] r1[4:0] g3[4] g2[3:0] g1[5:0] g3[3:0] "
            "b1[4:0] b3[1] b2[3:0] r2[4:0] b3[2] r3[4:0] b3[3]"),
    9: Mode(9, 0x1A, 2, 8, (5, 5, 6), True,
            "m[4:0] r0[7:0] b3[1] b2[4] g0[7:0] b2[5] g2[4] b0[7:0] b3[5] b3[4] r1[4:0] g3[4] g2[3:0] g1[4:0] b3[0] "
            "g3[3:0] b1[5:0] b2[3:0] r2[4:0] b3[2] r3[4:0] b3[3]"),
    10: Mode(10, 0x1E, 2, 6, (6, 6, 6), False,
             "m[4:0] r0[5:0] g3[4] b3[0] b3[1] b2[4] g0[5:0] g2[5] b2[5] b3[2] g2[4] b0[5:0] g3[5] b3[3] b3[5] b3[4] "
             "r1[5:0] g2[3:0] g1[5:0] g3[3:0] b1[5:0] b2[3:0] r2[5:0] r3[5:0]"),
    11: Mode(11, 0x03, 1, 10, (10, 10, 10), False, "m[4:0] r0[9:0] g0[9:0] b0[9:0] r1[9:0] g1[9:0] b1[9:0]"),
    12: Mode(12, 0x07, 1, 11, (9, 9, 9), True,
             "m[4:0] r0[9:0] g0[9:0] b0[9:0] r1[8:0] r0[10] g1[8:0] g0[10] b1[8:0] b0[10]"),
    13: Mode(13, 0x0B, 1, 12, (8, 8, 8), True,
             "m[4:0] r0[9:0] g0[9:0] b0[9:0] r1[7:0] r0[10:11] g1[7:0] g0[10:11] b1[7:0] b0[10:11]"),
    14: Mode(14, 0x0F, 1, 16, (4, 4, 4), True,
             "m[4:0] r0[9:0] g0[9:0] b0[9:0] r1[3:0] r0[10:15] g1[3:0] g0[10:15] b1[3:0] b0[10:15]"),
}

_PARTITIONS_TRIED = 4  # best-ranked partitions per block that the two-region modes try
_REFINE_ITERS = 2


# ---- decoder arithmetic (bcdec / D3D semantics) -------------------------------------------------------------------

def unquantize(q: np.ndarray, prec: int, signed: bool) -> np.ndarray:
    """Endpoint of `prec` bits -> 16-bit interpolation domain."""
    q = np.asarray(q, np.int64)
    if not signed:
        if prec >= 15:
            return q
        top = (1 << prec) - 1
        return np.where(q == 0, 0, np.where(q == top, 0xFFFF, ((q << 16) + 0x8000) >> prec))
    if prec >= 16:
        return q
    m = np.abs(q)
    u = np.where(m == 0, 0, np.where(m >= (1 << (prec - 1)) - 1, 0x7FFF, ((m << 15) + 0x4000) >> (prec - 1)))
    return np.where(q < 0, -u, u)


def finish(v: np.ndarray, signed: bool) -> np.ndarray:
    """Interpolated 16-bit value -> half-float bit pattern as a signed magnitude integer (sign applied)."""
    if not signed:
        return (v * 31) >> 6
    return np.where(v < 0, -((-v * 31) >> 5), (v * 31) >> 5)


def half_bits_to_int(h16: np.ndarray, signed: bool) -> np.ndarray:
    """float16 array -> signed magnitude integer of its bit pattern (the domain `finish` returns)."""
    bits = np.asarray(h16, np.float16).view(np.uint16).astype(np.int64)
    mag = bits & 0x7FFF
    if not signed:
        return np.where(bits & 0x8000, 0, mag)
    return np.where(bits & 0x8000, -mag, mag)


def int_to_half(v: np.ndarray) -> np.ndarray:
    """Inverse of half_bits_to_int -> float16."""
    v = np.asarray(v, np.int64)
    bits = np.where(v < 0, 0x8000 | -v, v).astype(np.uint16)
    return bits.view(np.float16)


# ---- quantization ------------------------------------------------------------------------------------------------

def _prec_range(prec: int, signed: bool):
    if not signed:
        return 0, (1 << prec) - 1
    lo, hi = -(1 << (prec - 1)), (1 << (prec - 1)) - 1
    # A full 16-bit signed endpoint of -32768 would decode to -infinity.
    return (max(lo, -0x7FFF), hi) if prec >= 16 else (lo, hi)


def quantize(u: np.ndarray, prec: int, signed: bool) -> np.ndarray:
    """Nearest `prec`-bit endpoint (by unquantized value) to a value u in the 16-bit interpolation domain."""
    lo, hi = _prec_range(prec, signed)
    if (not signed and prec >= 15) or (signed and prec >= 16):
        guess = np.rint(u)
    elif not signed:
        guess = np.rint(u * (1 << prec) / 65536.0 - 0.5)
    else:
        guess = np.sign(u) * np.rint(np.abs(u) * (1 << (prec - 1)) / 32768.0 - 0.5)
    guess = np.clip(guess, lo, hi).astype(np.int64)
    cands = np.clip(guess[..., None] + np.array([-1, 0, 1]), lo, hi)
    err = np.abs(unquantize(cands, prec, signed) - np.asarray(u)[..., None])
    return np.take_along_axis(cands, np.argmin(err, -1)[..., None], -1)[..., 0]


def quantize_mode(ends: np.ndarray, mode: Mode, signed: bool):
    """Float endpoints [M, R, 2, 3] -> (decoded endpoints [M, R, 2, 3] in mode precision, stored fields, same shape).

    Transformed modes store endpoints 1.. as deltas from endpoint 0; a delta that does not fit is clamped, so the
    decoded endpoint (what the error is measured on) is the nearest representable one.
    """
    q = quantize(ends, mode.epb, signed)
    if not mode.transformed:
        return q, q
    m = len(q)
    flat = q.reshape(m, -1, 3)
    base = flat[:, :1]
    dmax = (1 << (mode.delta - 1)) - 1
    delta = np.clip(flat[:, 1:] - base, -dmax - 1, dmax)
    actual = np.concatenate([base, base + delta], axis=1).reshape(q.shape)
    stored = np.concatenate([base, delta], axis=1).reshape(q.shape)
    return actual, stored


# ---- fitting -----------------------------------------------------------------------------------------------------

def _principal_ends(u: np.ndarray, region: np.ndarray, regions: int) -> np.ndarray:
    """Endpoints [M, R, 2, 3] at the extreme projections of each region's pixels on its principal axis."""
    out = []
    for r in range(regions):
        w = (region == r).astype(np.float64)[..., None]  # [M, 16, 1]
        n = np.maximum(w.sum(1), 1.0)
        mean = (w * u).sum(1) / n
        d = (u - mean[:, None]) * w
        cov = np.einsum("mpi,mpj->mij", d, d)
        axis = np.linalg.eigh(cov)[1][..., -1]  # largest eigenvector
        proj = np.einsum("mpi,mi->mp", u - mean[:, None], axis)
        big = 1e30
        tmin = np.where(w[..., 0] > 0, proj, big).min(1)
        tmax = np.where(w[..., 0] > 0, proj, -big).max(1)
        tmin, tmax = np.where(tmin > big / 2, 0, tmin), np.where(tmax < -big / 2, 0, tmax)
        out.append(np.stack([mean + tmin[:, None] * axis, mean + tmax[:, None] * axis], axis=1))
    return np.stack(out, axis=1)


def _orient(ends: np.ndarray, u: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Swap each region's endpoints so its anchor pixel lies nearer endpoint 0 (its index's top bit must be 0)."""
    m = np.arange(len(u))
    out = ends.copy()
    for r in range(ends.shape[1]):
        a, b = ends[:, r, 0], ends[:, r, 1]
        p = u[m, anchors[:, r]]
        dab = b - a
        t = ((p - a) * dab).sum(-1) / np.maximum((dab * dab).sum(-1), 1e-12)
        swap = t > 0.5
        out[swap, r, 0], out[swap, r, 1] = b[swap], a[swap]
    return out


def _palette(q: np.ndarray, mode: Mode, signed: bool) -> np.ndarray:
    """Decoded endpoints [M, R, 2, 3] -> palette [M, R, K, 3] in the half-bit integer domain."""
    uq = unquantize(q, mode.epb, signed)
    w = (WEIGHTS3 if mode.regions == 2 else WEIGHTS4)[None, None, :, None]
    a, b = uq[:, :, :1], uq[:, :, 1:]
    return finish(((64 - w) * a + w * b + 32) >> 6, signed)


def _assign(target: np.ndarray, pal: np.ndarray, region: np.ndarray, anchors: np.ndarray):
    """Best index per pixel (anchors restricted to the lower half) -> (indices [M, 16], squared error [M]).

    target [M, 16, 3] and pal [M, R, K, 3] are in the metric's domain (half bits, or decoded values).
    """
    m = np.arange(len(target))
    pal = pal.astype(np.float64)
    # |t - p|^2 = |t|^2 - 2 t.p + |p|^2 for every region's palette, then each pixel's own region.
    cross = np.einsum("mpc,mrkc->mprk", target, pal)
    d_all = (target * target).sum(-1)[:, :, None, None] - 2 * cross + (pal * pal).sum(-1)[:, None]
    d = np.maximum(d_all[m[:, None], np.arange(16)[None], region], 0.0)  # [M, 16, K]
    k = pal.shape[2]
    for r in range(anchors.shape[1]):
        d[m, anchors[:, r], k // 2:] = np.inf
    idx = np.argmin(d, -1)
    return idx, np.take_along_axis(d, idx[..., None], -1)[..., 0].sum(-1)


def _least_squares(u, wt, idx, region, ends, mode: Mode):
    """Endpoints [M, R, 2, 3] minimising the weighted error in the interpolation domain for fixed indices."""
    weights = WEIGHTS3 if mode.regions == 2 else WEIGHTS4
    t = (weights[idx] / 64.0)[..., None]  # [M, 16, 1]
    s = 1 - t
    out = ends.copy()
    for r in range(mode.regions):
        w = (region == r)[..., None] * wt  # [M, 16, 3]
        a11, a12, a22 = (w * s * s).sum(1), (w * s * t).sum(1), (w * t * t).sum(1)
        b1, b2 = (w * s * u).sum(1), (w * t * u).sum(1)
        det = a11 * a22 - a12 * a12
        ok = np.abs(det) > 1e-9 * np.maximum(a11 * a22, 1e-30)
        safe = np.where(ok, det, 1.0)
        out[:, r, 0] = np.where(ok, (a22 * b1 - a12 * b2) / safe, ends[:, r, 0])
        out[:, r, 1] = np.where(ok, (a11 * b2 - a12 * b1) / safe, ends[:, r, 1])
    return out


def _fit_mode(target, u, wt, region, anchors, mode: Mode, signed: bool, ends, iters: int, linear: bool):
    """Quantize -> assign -> least squares, `iters` rounds; keep the best. Returns (err, q, stored, idx, pal).

    Indices and errors are exact in the metric's domain (`linear`: decoded values, else half bits); the least-squares
    step works in the interpolation domain with `wt` approximating the metric.
    """
    best = None
    for it in range(iters + 1):
        ends = _orient(ends, u, anchors)
        q, stored = quantize_mode(ends, mode, signed)
        pal = _palette(q, mode, signed)
        idx, err = _assign(target, int_to_half(pal).astype(np.float64) if linear else pal, region, anchors)
        if best is None:
            best = [err, q, stored, idx, pal]
        else:
            better = err < best[0]
            for i, v in enumerate((err, q, stored, idx, pal)):
                best[i] = np.where(better.reshape((-1,) + (1,) * (v.ndim - 1)), v, best[i])
        if it < iters:
            ends = _least_squares(u, wt, idx, region, ends, mode)
    return best


def _to_interp_domain(t: np.ndarray, signed: bool) -> np.ndarray:
    """Half-bit integers -> the 16-bit interpolation domain (inverse of `finish`, unrounded)."""
    return t * (32.0 / 31.0 if signed else 64.0 / 31.0)


def _rank_partitions(u: np.ndarray, keep: int) -> np.ndarray:
    """Per block, the `keep` partitions whose two regions are best fitted by lines (least residual) -> [N, keep]."""
    masks = PARTITIONS.astype(np.float64)  # [32, 16]
    resid = np.zeros((len(u), len(masks)))
    for w in (1.0 - masks, masks):
        n = w.sum(1)  # [32]
        mean = np.einsum("kp,npc->nkc", w, u) / n[None, :, None]
        second = np.einsum("kp,npi,npj->nkij", w, u, u) / n[None, :, None, None]
        cov = (second - mean[..., :, None] * mean[..., None, :]) * n[None, :, None, None]
        ev = np.linalg.eigvalsh(cov)
        resid += ev[..., 0] + ev[..., 1]
    return np.argsort(resid, axis=1)[:, :keep]


# ---- packing -----------------------------------------------------------------------------------------------------

def pack_blocks(mode: Mode, stored: np.ndarray, idx: np.ndarray, partition: np.ndarray) -> np.ndarray:
    """Fields -> [M, 16] uint8 blocks. stored [M, R, 2, 3] (endpoints/deltas), idx [M, 16], partition [M]."""
    m = len(idx)
    vals = {"m": np.full(m, mode.value, np.int64), "d": np.asarray(partition, np.int64)}
    flat = stored.reshape(m, -1, 3)
    for e in range(flat.shape[1]):
        for c, ch in enumerate("rgb"):
            vals[f"{ch}{e}"] = flat[:, e, c]
    bits = np.zeros((m, 128), np.uint8)
    for pos, (name, b) in enumerate(mode.fields):
        bits[:, pos] = (vals[name] >> b) & 1  # two's complement for negative values
    ib = 3 if mode.regions == 2 else 4
    anchor2 = ANCHOR2[partition] if mode.regions == 2 else np.full(m, -1)
    pos = np.full(m, len(mode.fields))
    for p in range(16):
        n = np.where((p == 0) | (anchor2 == p), ib - 1, ib)
        for b in range(ib):
            sel = b < n
            rows = np.nonzero(sel)[0]
            bits[rows, pos[rows] + b] = (idx[rows, p] >> b) & 1
        pos = pos + n
    assert (pos == 128).all()
    return np.packbits(bits, axis=1, bitorder="little")


# ---- entry point -------------------------------------------------------------------------------------------------

def _minmax_ends(u):
    return np.stack([u.min(1), u.max(1)], axis=1)[:, None]  # [M, 1, 2, 3]


def _encode_fast(t, x, u, wt, linear, signed):
    mode = MODES[11]
    m = len(t)
    region = np.zeros((m, 16), np.int64)
    anchors = np.zeros((m, 1), np.int64)
    err, q, stored, idx, pal = _fit_mode(t, u, np.ones_like(u), region, anchors, mode, signed, _minmax_ends(u), 0,
                                         linear=False)
    return err, pack_blocks(mode, stored, idx, np.zeros(m, np.int64)), _decoded(pal, region, idx)


def _decoded(pal, region, idx):
    m = np.arange(len(idx))[:, None]
    return pal[m, region, idx]  # [M, 16, 3]


def _encode_thorough(t, x, u, wt, linear, signed):
    n = len(t)
    target = x if linear else t
    best_err = np.full(n, np.inf)
    blocks = np.zeros((n, 16), np.uint8)
    decoded = np.zeros((n, 16, 3), np.int64)

    def keep(rows, err, blk, dec):
        # rows: block of each candidate; keep the lowest error candidate per block.
        order = np.lexsort((err, rows))
        rows, err, blk, dec = rows[order], err[order], blk[order], dec[order]
        first = np.r_[True, rows[1:] != rows[:-1]]
        rows, err, blk, dec = rows[first], err[first], blk[first], dec[first]
        better = err < best_err[rows]
        r = rows[better]
        best_err[r], blocks[r], decoded[r] = err[better], blk[better], dec[better]

    one = np.zeros((n, 16), np.int64)
    anchors1 = np.zeros((n, 1), np.int64)
    zeros = np.zeros(n, np.int64)
    # The fast encoder's block is a candidate too, so thorough never loses to it on the chosen metric.
    for num, ends, iters in ((11, _minmax_ends(u), 0), (11, _principal_ends(u, one, 1), _REFINE_ITERS),
                             (12, None, _REFINE_ITERS), (13, None, _REFINE_ITERS), (14, None, _REFINE_ITERS)):
        ends = _principal_ends(u, one, 1) if ends is None else ends
        mode = MODES[num]
        err, q, stored, idx, pal = _fit_mode(target, u, wt, one, anchors1, mode, signed, ends, iters, linear)
        keep(np.arange(n), err, pack_blocks(mode, stored, idx, zeros), _decoded(pal, one, idx))

    parts = _rank_partitions(u, _PARTITIONS_TRIED).ravel()
    rows = np.repeat(np.arange(n), _PARTITIONS_TRIED)
    target2, u2, wt2, region = target[rows], u[rows], wt[rows], PARTITIONS[parts]
    anchors2 = np.stack([np.zeros_like(parts), ANCHOR2[parts]], axis=1)
    ends2 = _principal_ends(u2, region, 2)
    for num in range(1, 11):
        mode = MODES[num]
        err, q, stored, idx, pal = _fit_mode(target2, u2, wt2, region, anchors2, mode, signed, ends2, _REFINE_ITERS,
                                             linear)
        keep(rows, err, pack_blocks(mode, stored, idx, parts), _decoded(pal, region, idx))
    return best_err, blocks, decoded


METRICS = ("linear", "relative")


def error_weights(x: np.ndarray, metric: str) -> np.ndarray:
    """Per pixel-channel weight that turns squared half-bit error into the chosen error measure.

    "relative": every half-bit step counts alike (error relative to magnitude, as for HDR images).
    "linear": a half-bit step is worth ~|value| / 1024, so squared linear error ~ value**2 * bit error**2.
    """
    if metric == "relative":
        return np.ones(np.shape(x))
    mag = np.maximum(np.abs(np.asarray(x, np.float64)), 2.0 ** -14)  # subnormal steps are uniform
    return (mag / mag.max(axis=(1, 2), keepdims=True)) ** 2


def encode_bc6h_blocks(x: np.ndarray, signed: bool, quality: str = "thorough", metric: str = "linear",
                       return_decoded: bool = False, chunk: int = 1024):
    """x [N, 16, 3] float16 -> [N, 16] uint8 BC6H blocks (and, if asked, the predicted decode [N, 16, 3] float16).

    `metric` picks what the thorough search minimises: "linear" (squared value error, for token latents) or
    "relative" (squared half-bit error, for HDR images). The fast encoder ignores it.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown BC6H metric {metric!r}")
    x = np.asarray(x, np.float16)
    if not signed:
        x = np.maximum(x, np.float16(0))  # -0.0 and negatives read as 0 in UF16
    t_all = half_bits_to_int(x, signed).astype(np.float64)
    x_all = x.astype(np.float64)
    wt_all = error_weights(x, metric)
    encode_chunk = _encode_thorough if quality == "thorough" else _encode_fast
    blocks, decoded = [], []
    for s in range(0, len(t_all), chunk):
        t, wt = t_all[s:s + chunk], wt_all[s:s + chunk]
        _, blk, dec = encode_chunk(t, x_all[s:s + chunk], _to_interp_domain(t, signed), wt, metric == "linear", signed)
        blocks.append(blk)
        decoded.append(dec)
    blocks = np.concatenate(blocks) if blocks else np.zeros((0, 16), np.uint8)
    if not return_decoded:
        return blocks
    return blocks, int_to_half(np.concatenate(decoded)) if decoded else np.zeros((0, 16, 3), np.float16)
