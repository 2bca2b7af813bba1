"""Compressor training: the loss vanishes on a perfect reconstruction and grows with pooled-token error; the linear
start is PCA of the model's token cells (numpy's SVD as the reference)."""

import numpy as np
import torch
from ntc_export.models import build
from ntc_export.train.bc_autoencoder import linear_init
from ntc_export.train.compressor import LossScales, token_loss


def test_loss_vanishes_on_perfect_reconstruction_and_grows_with_error():
    rng = np.random.default_rng(1)
    t = torch.from_numpy(rng.standard_normal((60, 16, 12)).astype(np.float32))
    scales = LossScales.of(t)
    zero, cos = token_loss(t, t, scales)
    assert abs(float(zero)) < 1e-5 and float(cos) > 0.9999
    noise = 0.3 * torch.randn(t.shape, generator=torch.Generator().manual_seed(0))
    shifted = t + 0.3 * torch.randn(t.shape[0], 1, t.shape[2], generator=torch.Generator().manual_seed(1))
    per_token, _ = token_loss(t + noise, t, scales)
    pooled_too, _ = token_loss(t + noise + (shifted - t), t, scales)
    assert float(pooled_too) > float(per_token) > 0


def test_linear_init_is_pca_of_token_cells():
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((8, 2 * 2 * 16)).astype(np.float32)
    cells = rng.standard_normal((6, 16, 8)).astype(np.float32) @ mix  # [N, 4x4 cells, 2x2x16], rank 8
    tokens = cells.reshape(6, 4, 4, 2, 2, 16).transpose(0, 1, 3, 2, 4, 5).reshape(6, 64, 16)
    model = build("bc_autoencoder", dict(input_dim=16, latent=8, merge=2, dim=16, depth=1, heads=2, window=4))
    linear_init(model, tokens)
    flat = cells.reshape(-1, 64)
    _, _, vt = np.linalg.svd(flat - flat.mean(0), full_matrices=False)
    np.testing.assert_allclose(model.center.numpy(), flat.mean(0), atol=1e-5)
    overlap = np.abs(model.basis.detach().numpy() @ vt[:8].T)  # same subspace, up to sign and order of equal values
    np.testing.assert_allclose(np.linalg.svd(overlap, compute_uv=False), 1.0, atol=1e-4)
    # rank-8 cells: the untrained linear coder (simulated BC off) reconstructs them to float precision
    x = torch.from_numpy(tokens)
    z = (model.cells(x) - model.center) @ model.basis.T
    recon = model.decode_latent(z * model.to_unit_scale + model.to_unit_offset, 4, 4)
    np.testing.assert_allclose(recon.detach().numpy(), tokens, atol=1e-3)
