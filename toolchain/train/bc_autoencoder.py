"""Training recipe of `bc_autoencoder`: config per rate and the linear-coder start (see ntc_export.train.recipes)."""

import numpy as np
import torch

from ..util.errors import NtcError

ZOO_PREFIX = "bcae"


def default_merge(rate: float) -> int:
    """2x2 token cells from 8x: on the photo corpus PCA of cells keeps more than per-token PCA at the same bytes
    (token cosine 0.994 vs 0.985 at 8x, 0.985 vs 0.967 at 16x, BC4 included); at 4x per-token coding is already
    0.9987 and a 1536 x 1536 cell basis would not fit a 5 MB checkpoint."""
    return 1 if rate < 8 else 2


def config_for_rate(rate: float, input_dim: int = 384, merge: int | None = None, **overrides) -> dict:
    """Config of a bc_autoencoder storing tokens at `rate`x fewer bytes than fp16 (16x16 token grids)."""
    from ..models.bc_autoencoder import latent_for_rate

    if rate <= 0:
        raise NtcError(f"--rate must be positive, got {rate}")
    merge = default_merge(rate) if merge is None else merge
    latent_grid = 16 // merge
    config = dict(input_dim=input_dim, latent=latent_for_rate(rate, input_dim, merge), merge=merge, bc_format="bc5",
                  dim=128, depth=2, heads=4, window=8 if latent_grid >= 8 else 4, mlp_ratio=2.0, num_classes=0)
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config


@torch.no_grad()
def linear_init(module: torch.nn.Module, tokens: np.ndarray, max_cells: int = 200_000) -> None:
    """Set a bc_autoencoder's linear coder to PCA of its token cells on `tokens` [N, h*w, D] (seeded subsample)."""
    from ..evaluate.pca_reference import clip_ranges, fit_basis

    cells = module.cells(torch.from_numpy(tokens)).numpy()
    center, directions = fit_basis(cells, max_tokens=max_cells)
    directions = directions[: module.latent]
    if len(directions) < module.latent:
        raise NtcError(f"linear init: {len(directions)} principal directions from the training tokens, the latent "
                       f"needs {module.latent}; train on more images")
    subset = cells.reshape(-1, cells.shape[-1])[:: max(1, cells.shape[0] * cells.shape[1] // max_cells)]
    module.init_linear(center, directions, *clip_ranges(subset[None], center, directions))


def init(module: torch.nn.Module, tokens: np.ndarray, seed: int = 0) -> None:
    """The linear coder on the training tokens (PCA of the model's token cells)."""
    module.check_token_grid(torch.from_numpy(tokens[:1]))
    linear_init(module, tokens)
