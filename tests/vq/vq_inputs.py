"""Tiny vq models on synthetic low-rank tokens (no corpus, no zoo), shared by the vq tests."""

import ntc_export.models.vq  # noqa: F401  (registers the arch until models/__init__ imports it)
import numpy as np
import torch
from ntc_export.models import build

TINY = dict(latent=16, groups=4, stages=2, codewords=16, dim=16, depth=2, heads=2, window=4, mlp_ratio=2.0,
            enc_hidden=8)


def low_rank_tokens(n: int, seed: int = 0, grid: int = 16, rank: int = 12) -> np.ndarray:
    """[n, grid*grid, 384] tokens on a rank-`rank` subspace plus a shared mean and a little noise."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((rank, 384)) / np.sqrt(rank)
    x = rng.standard_normal((n, grid * grid, rank)) * np.linspace(3, 0.5, rank) @ mix
    return (x + rng.standard_normal(384) + 0.05 * rng.standard_normal((n, grid * grid, 384))).astype(np.float32)


def tiny_model(seed: int = 0, **overrides):
    """A tiny vq model started by its recipe (PCA + k-means) on synthetic tokens, weights nudged off zero (as after
    training), in eval mode."""
    from ntc_export.train import vq as recipe

    torch.manual_seed(seed)
    model = build("vq", dict(TINY, **overrides))
    recipe.init(model, low_rank_tokens(6, seed), seed=seed, kmeans_cells=2048, iters=4)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "basis":
                p.add_(0.02 * torch.randn_like(p))
    return model.eval()
