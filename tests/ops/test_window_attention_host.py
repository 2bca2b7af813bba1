"""Host (fp32 C++) reference of ntc::WindowAttention v1 against an independent PyTorch computation."""

import ctypes

import numpy as np
import pytest
import torch
from ntc_export.native.host import host_library

_F = ctypes.POINTER(ctypes.c_float)


def _host_fn():
    fn = host_library().ntc_window_attention_host
    fn.argtypes = [_F] * 5 + [ctypes.c_int] * 5 + [ctypes.c_float, _F]
    fn.restype = ctypes.c_int
    return fn


def _ptr(a):
    return None if a is None else a.ctypes.data_as(_F)


def run_host(q, k, v, table, mask, window, scale, n_windows=None):
    bw, heads, _, hd = q.shape
    out = np.full((bw, window * window, heads * hd), np.nan, dtype=np.float32)
    arrays = [np.ascontiguousarray(a, dtype=np.float32) if a is not None else None for a in (q, k, v, table, mask)]
    nw = n_windows if n_windows is not None else (mask.shape[0] if mask is not None else 0)
    rc = _host_fn()(*map(_ptr, arrays), bw, nw, heads, window, hd, scale, _ptr(out))
    return rc, out


def swin_rel_index(window):
    """Swin's relative_position_index built from coordinate grids, as models do."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def torch_reference(q, k, v, table, mask, window, scale):
    """softmax(scale * q k^T + bias[rel_index] + mask[b % nW]) v in float64, heads concatenated."""
    q, k, v = (torch.from_numpy(a).double() for a in (q, k, v))
    bw, heads, t, hd = q.shape
    attn = scale * q @ k.transpose(-1, -2)
    if table is not None:
        bias = torch.from_numpy(table).double()[swin_rel_index(window).reshape(-1)].reshape(t, t, heads)
        attn = attn + bias.permute(2, 0, 1)[None]
    if mask is not None:
        m = torch.from_numpy(mask).double()
        attn = attn + m[torch.arange(bw) % m.shape[0]][:, None]
    out = torch.softmax(attn, dim=-1) @ v
    return out.transpose(1, 2).reshape(bw, t, heads * hd).numpy()


def make_inputs(rng, bw, heads, window, hd, n_windows):
    t = window * window
    q, k, v = (rng.standard_normal((bw, heads, t, hd), dtype=np.float32) for _ in range(3))
    table = rng.standard_normal(((2 * window - 1) ** 2, heads), dtype=np.float32)
    mask = None
    if n_windows:
        # Swin-like: -10000 on a random subset of keys, the diagonal always allowed.
        blocked = rng.random((n_windows, t, t)) < 0.4
        blocked[:, np.arange(t), np.arange(t)] = False
        mask = np.where(blocked, -10000.0, 0.0).astype(np.float32)
    return q, k, v, table, mask


@pytest.mark.parametrize("window", [7, 8])
@pytest.mark.parametrize("hd", [32, 64])
@pytest.mark.parametrize("n_windows", [0, 3])
def test_host_matches_torch(window, hd, n_windows):
    rng = np.random.default_rng(window * 100 + hd + n_windows)
    bw, heads = 5, 3
    q, k, v, table, mask = make_inputs(rng, bw, heads, window, hd, n_windows)
    scale = hd ** -0.5
    rc, out = run_host(q, k, v, table, mask, window, scale)
    assert rc == 0
    ref = torch_reference(q, k, v, table, mask, window, scale)
    assert np.abs(out - ref).max() <= 1e-5


def test_rel_index_matches_swin_grid():
    # A one-hot bias table per relative index reads back the index itself through the kernel's gather.
    window, heads = 7, 1
    t = window * window
    table = np.arange((2 * window - 1) ** 2, dtype=np.float32)[:, None] * 1e-3
    # Zero q makes scores equal to the bias; v = one-hot keys makes out[i, j] = softmax(bias[i, :])[j].
    q = np.zeros((1, heads, t, t), dtype=np.float32)
    k = np.zeros_like(q)
    v = np.eye(t, dtype=np.float32)[None, None]
    rc, out = run_host(q, k, v, table, None, window, 1.0)
    assert rc == 0
    bias = torch.from_numpy(table[:, 0]).double()[swin_rel_index(window)]
    assert np.abs(out[0] - torch.softmax(bias, dim=-1).numpy()).max() <= 1e-6


def test_no_bias_and_mask_broadcast_over_odd_bw():
    rng = np.random.default_rng(7)
    q, k, v, _, mask = make_inputs(rng, 7, 2, 8, 32, 4)  # BW = 7 is not a multiple of nW = 4
    rc, out = run_host(q, k, v, None, mask, 8, 0.25)
    assert rc == 0
    assert np.abs(out - torch_reference(q, k, v, None, mask, 8, 0.25)).max() <= 1e-5


def test_bad_arguments_are_rejected():
    rng = np.random.default_rng(1)
    q, k, v, table, mask = make_inputs(rng, 2, 1, 7, 32, 2)
    rc, out = run_host(q, k, v, table, mask, 7, 1.0, n_windows=0)  # a mask needs nW > 0
    assert rc == -1 and np.isnan(out).all()
    fn = _host_fn()
    assert fn(None, _ptr(k), _ptr(v), None, None, 2, 0, 1, 7, 32, 1.0, _ptr(out)) == -1
    assert fn(_ptr(q), _ptr(k), _ptr(v), None, None, 2, 0, 0, 7, 32, 1.0, _ptr(out)) == -1
