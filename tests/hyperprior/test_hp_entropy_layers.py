"""Entropy layers against numpy re-implementations: the factorized prior's cumulative, pmfs and medians, the Gaussian
conditional's bin probabilities and scale-table indexes, the straight-through and noisy quantisers."""

import math

import numpy as np
import torch
from ntc_export.models.entropy_layers import EntropyBottleneck, GaussianConditional, scale_table


def _trained_like_bottleneck(channels=3, seed=0) -> EntropyBottleneck:
    torch.manual_seed(seed)
    eb = EntropyBottleneck(channels)
    with torch.no_grad():
        for p in eb.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return eb


def _np_cumulative(eb: EntropyBottleneck, x: np.ndarray) -> np.ndarray:
    """Ballé 2018 appendix 6.1 in numpy: x [C, N] -> sigmoid of the cumulative logits [C, N]."""
    softplus = lambda a: np.log1p(np.exp(a))  # noqa: E731
    out = []
    for c in range(eb.channels):
        v = x[c][None].astype(np.float64)
        for i, (m, b) in enumerate(zip(eb.matrices, eb.biases)):
            v = softplus(m[c].detach().double().numpy()) @ v + b[c].detach().double().numpy()
            if i < len(eb.factors):
                v = v + np.tanh(eb.factors[i][c].detach().double().numpy()) * np.tanh(v)
        out.append(v[0])
    return 1 / (1 + np.exp(-np.stack(out)))


def test_bottleneck_likelihood_matches_numpy_cumulative():
    eb = _trained_like_bottleneck()
    x = torch.linspace(-6, 6, 25).reshape(1, 1, 25).expand(2, 3, 25).contiguous()
    x[1] += 0.37
    lik = eb.likelihood(x).detach().numpy()
    xn = x.numpy()
    for b in range(2):
        ref = _np_cumulative(eb, xn[b] + 0.5) - _np_cumulative(eb, xn[b] - 0.5)
        np.testing.assert_allclose(lik[b], np.maximum(ref, 1e-9), rtol=2e-4, atol=1e-7)


def test_bottleneck_tables_medians_and_pmf():
    eb = _trained_like_bottleneck().eval()
    eb.update()
    med = eb.medians.numpy()
    np.testing.assert_allclose(_np_cumulative(eb, med[:, None])[:, 0], 0.5, atol=1e-9)
    pmf = eb.pmf_table()
    lo, hi = eb.support_lo.numpy(), eb.support_hi.numpy()
    for c in range(eb.channels):
        k = np.arange(lo[c], hi[c] + 1) + med[c]
        ref = _np_cumulative(eb, np.tile(k + 0.5, (eb.channels, 1)))[c] - \
            _np_cumulative(eb, np.tile(k - 0.5, (eb.channels, 1)))[c]
        np.testing.assert_allclose(pmf[c, : len(k)], ref, rtol=1e-9, atol=1e-15)
        assert not pmf[c, len(k):].any()
        assert pmf[c].sum() > 1 - 2e-6  # the support holds all but the tail mass
    # Symbols clamp onto the support and dequantize back onto the median-offset integers.
    z = torch.tensor([[-1e4], [0.3], [1e4]]).reshape(1, 3, 1).expand(2, 3, 1) + torch.from_numpy(med).float()[:, None]
    s = eb.symbols(z)
    assert (s[:, 0, 0] == 0).all() and (s[:, 2, 0] == int(hi[2] - lo[2])).all()
    np.testing.assert_allclose(eb.dequantize(s)[:, 1, 0].numpy(), np.round(0.3) + med[1], atol=1e-6)


def test_gaussian_conditional_bins_and_scale_indexes():
    gc = GaussianConditional()
    y = torch.tensor([0.0, 1.0, -2.0, 3.0, 40.0])
    s = torch.tensor([0.05, 1.0, 2.5, 0.7, 3.0])
    lik = gc.likelihood(y, s).numpy()
    phi = lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2)))  # noqa: E731
    for i in range(len(y)):
        sd = max(float(s[i]), 0.11)
        ref = phi((float(y[i]) + 0.5) / sd) - phi((float(y[i]) - 0.5) / sd)
        assert abs(lik[i] - max(ref, 1e-9)) < 1e-6
    table = scale_table().numpy()
    assert abs(table[0] - 0.11) < 1e-6 and abs(table[-1] - 4096) < 1e-2
    scales = torch.tensor([0.0, 0.11, 0.2, 1.0, 5000.0, 17.3])
    idx = gc.scale_indexes(scales).numpy()
    ref = np.minimum(np.searchsorted(table, scales.numpy(), side="left"), len(table) - 1)
    np.testing.assert_array_equal(idx, ref)
    idx64 = gc.scale_indexes(scales.double()).numpy()
    np.testing.assert_array_equal(idx64, ref)
    assert gc.quantize(torch.tensor([1e6, -2.6])).tolist() == [32767.0, -3.0]


def test_training_quantisers():
    gc = GaussianConditional()
    y = torch.randn(2, 3, 4, 4, requires_grad=True)
    y_hat, lik = gc(y, torch.ones_like(y))
    assert torch.equal(y_hat.detach(), torch.round(y.detach()))
    y_hat.sum().backward()
    assert torch.equal(y.grad, torch.ones_like(y))  # straight-through
    eb = EntropyBottleneck(3)
    z = torch.randn(2, 3, 2, 2)
    z_hat, zl = eb(z)
    med = eb._medians_now().reshape(1, 3, 1, 1)
    torch.testing.assert_close(z_hat, torch.round(z - med) + med)
    assert zl.shape == z.shape and (zl > 0).all() and (zl <= 1).all()
