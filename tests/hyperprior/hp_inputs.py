"""Tiny hyperprior models and synthetic tokens (low-rank Gaussian, 16x16 grids) shared by the hyperprior tests: no
data files, no zoo."""

import functools

import ntc_export.models.hyperprior  # noqa: F401  (registers the arch)
import numpy as np
import torch

torch.set_num_threads(1)  # tiny models: threads only contend on a shared machine

TINY = dict(latent=12, hyper=4, enc_dim=8, dim=16, depth=1, heads=2, window=4, mlp_ratio=2.0, target_rate=24.0)


def low_rank_tokens(n: int, seed: int = 0, rank: int = 3, grid=16) -> np.ndarray:
    """[n, h*w, 384] tokens on a grid (a side or (h, w)): a shared mean + low-rank Gaussian detail (one fixed subspace;
    `seed` draws the coefficients) + a little white noise."""
    h, w = (grid, grid) if isinstance(grid, int) else grid
    fixed = np.random.default_rng(1234)
    mean = fixed.standard_normal(384).astype(np.float32)
    basis = fixed.standard_normal((rank, 384)).astype(np.float32) / np.sqrt(rank)
    rng = np.random.default_rng(seed)
    coeff = rng.standard_normal((n, h * w, rank)).astype(np.float32) * np.linspace(3, 0.3, rank, dtype=np.float32)
    return (mean + coeff @ basis + 0.05 * rng.standard_normal((n, h * w, 384))).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _tiny_state(seed: int = 0) -> dict:
    return {k: v.clone() for k, v in _tiny_model(seed).state_dict().items()}


def tiny_model(seed: int = 0):
    """The tiny coder below (built once per seed and test session)."""
    from ntc_export.models import build

    model = build("hyperprior", TINY)
    model.load_state_dict(_tiny_state(seed))
    return model.eval()


def _tiny_model(seed: int = 0):
    """A tiny coder started by the recipe's init on synthetic tokens, then perturbed like trained weights."""
    from ntc_export.models import build
    from ntc_export.train import hyperprior as recipe

    torch.manual_seed(seed)
    model = build("hyperprior", TINY)
    train = torch.from_numpy(low_rank_tokens(4, seed=100 + seed))
    recipe.init(model, train.numpy(), seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("encoder", "up", "blocks", "norm", "out")):
                p.add_(0.02 * torch.randn_like(p))
    fit_entropy_model(model, train)
    return model.eval()


def fit_entropy_model(model, tokens: torch.Tensor, steps: int = 40) -> None:
    """A few rate-only steps on the hyper-analysis, hyper-synthesis and factorized prior: realistic coding tables."""
    params = [p for n, p in model.named_parameters() if n.startswith(("h_a", "h_s", "entropy_bottleneck"))]
    opt = torch.optim.Adam(params, lr=1e-2)
    model.train()
    for _ in range(steps):
        _, extra, _ = model.train_forward(tokens)
        opt.zero_grad()
        extra.backward()
        opt.step()
