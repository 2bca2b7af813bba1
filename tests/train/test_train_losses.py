"""Compressor training losses: the frozen probe equals sklearn's, and the extra terms vanish on a perfect
reconstruction and grow with pooled-token error."""

import numpy as np
import torch
from ntc_export.train.compressor import LinearProbe, LossScales, token_loss


def _data(seed=0, n=60, tokens=16, dim=12):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    x = (rng.standard_normal((n, tokens, dim)) + labels[:, None, None] * 0.5).astype(np.float32)
    return x, labels


def test_probe_matches_sklearn_decision_function():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, labels = _data()
    probe = LinearProbe.fit(x, labels)
    pooled = x.mean(1)
    scaler = StandardScaler().fit(pooled)
    ref = LogisticRegression(max_iter=3000, C=0.5).fit(scaler.transform(pooled), labels)
    got = probe(torch.from_numpy(pooled)).numpy()
    np.testing.assert_allclose(got, ref.decision_function(scaler.transform(pooled)), rtol=1e-4, atol=1e-4)


def test_extra_terms_vanish_on_perfect_reconstruction_and_grow_with_error():
    x, labels = _data(1)
    t = torch.from_numpy(x)
    scales, probe = LossScales.of(t), LinearProbe.fit(x, labels)
    base, _ = token_loss(t, t, scales)
    full, cos = token_loss(t, t, scales, pooled_std_weight=2.0, probe=probe, probe_weight=20.0)
    assert abs(float(base)) < 1e-5 and abs(float(full)) < 1e-5 and float(cos) > 0.9999
    shifted = t + 0.3 * torch.randn(t.shape[0], 1, t.shape[2], generator=torch.Generator().manual_seed(0))
    plain, _ = token_loss(shifted, t, scales)
    extra, _ = token_loss(shifted, t, scales, pooled_std_weight=2.0, probe=probe, probe_weight=20.0)
    assert float(extra) > float(plain) > 0
