"""Training recipe of `ntc_grid` (RTXNTC-style latent grids; int4 or NTBC BC4/BC5 storage): config per rate and the
PCA-pyramid start (see ntc_export.train.recipes and ntc_export.models.ntc_grid).

Zoo checkpoints (the first 1000 maps of the photo corpus's train split, photos_train.npz from `ntc-export tokens
--builtin photos --split train`, the same tokens as `--data builtin:photos`; seeded):
    ntc_x16.pt (int4, C_f 352, C_c 128):
        python scripts/build_zoo_compressors.py --arch ntc_grid --rates 16 --data photos_train.npz \
            --max-images 1000 --epochs 4 --lr 1e-3 --threads 1 --log /tmp/ntc_grid_log16.json
    ntc_x64.pt (int4, C_f 88, C_c 32):
        python scripts/build_zoo_compressors.py --arch ntc_grid --rates 64 --data photos_train.npz \
            --max-images 1000 --epochs 4 --lr 1e-3 --threads 1 --log /tmp/ntc_grid_log64.json
    ntc_bc5_x32.pt (NTBC: BC5 planes, C_f 176, C_c 64):
        python scripts/build_zoo_compressors.py --arch ntc_grid --rates 32 --set 'storage="bc5"' --name ntc_bc5_x32 \
            --data photos_train.npz --max-images 1000 --epochs 4 --lr 1e-3 --threads 1 \
            --log /tmp/ntc_grid_log32bc5.json
The decoder is trained through the amortised encoder (straight-through 4-bit rounding, or bc_sim for BC); the zoo's
payloads come from the per-image optimisation (`opt_steps` 40 Adam steps at lr 0.004 from the amortised start).
"""

import numpy as np
import torch

from ..models import ntc_grid as _model  # noqa: F401  (registers the arch until the models package imports it)
from ..util.errors import NtcError

ZOO_PREFIX = "ntc"

# (fine channels, coarse channels) per rate: 64 C_f + 16 C_c latent values at 4 bits; the coarse grid takes 1/12 of
# the values (a 4x4-cell mean per coarse texel), the rest codes 2x2 cells.
SPLITS = {16: (352, 128), 32: (176, 64), 64: (88, 32)}


def channels_for_rate(rate: float, input_dim: int = 384, storage: str = "int4") -> tuple[int, int]:
    """(C_f, C_c) giving `rate`x fewer bytes than fp16 tokens: the table above, else C_c = C_f / 3 rounded to
    the storage's plane size."""
    from ..models.ntc_grid import latent_values_for_rate

    if rate <= 0:
        raise NtcError(f"--rate must be positive, got {rate}")
    if input_dim == 384 and rate in SPLITS:
        return SPLITS[rate]
    values = latent_values_for_rate(rate, input_dim)
    cc = max(2, int(round(values / 12 / 16 / 2)) * 2)
    cf = max(2, int((values - 16 * cc) // 64 // 2) * 2)
    return cf, cc


def config_for_rate(rate: float, input_dim: int = 384, **overrides) -> dict:
    """Config of an ntc_grid storing tokens at `rate`x fewer bytes than fp16 (16x16 token grids)."""
    storage = overrides.get("storage") or "int4"
    cf, cc = channels_for_rate(rate, input_dim, storage)
    config = dict(input_dim=input_dim, fine_channels=cf, coarse_channels=cc, hidden=64, layers=2, storage=storage,
                  opt_steps=40, opt_lr=0.004, num_classes=0)
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config


def _pca(x: np.ndarray, k: int, max_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean, directions [k, d], lo [k], hi [k]) of rows x [n, d] (seeded subsample)."""
    from ..evaluate.pca_reference import clip_ranges, fit_basis

    mean, directions = fit_basis(x[None], max_tokens=max_rows)
    if len(directions) < k:
        raise NtcError(f"ntc_grid init: {len(directions)} principal directions from the training tokens, the grid "
                       f"needs {k}; train on more images")
    directions = directions[:k]
    sub = x[:: max(1, len(x) // max_rows)]
    lo, hi = clip_ranges(sub[None], mean, directions)
    return mean, directions, lo, hi


@torch.no_grad()
def pyramid_init(module, tokens: np.ndarray, max_rows: int = 100_000) -> None:
    """Set the skips to a two-level PCA pyramid on `tokens` [N, 256, D] (or any grid, padded as the model pads it):
    PCA of 4x4-cell mean tokens (coarse), then PCA of the 2x2 cells of the residual after the 4-bit coarse level
    (fine). Features are unit - 0.5, so a direction's weights are its clipping span times the direction, and the range
    midpoints go into the bias."""
    from ..models.bc_autoencoder import merge_cells
    from ..models.ntc_grid import COARSE_TEXEL, LEVELS, bilinear

    x, h, w = module.padded_tokens(torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.float32)))
    n, d, p = len(x), x.shape[-1], COARSE_TEXEL
    means = x.reshape(n, h // p, p, w // p, p, d).mean((2, 4))
    mc, dc, lo_c, hi_c = (torch.from_numpy(a) for a in _pca(means.reshape(-1, d).numpy(), module.cc, max_rows))
    span_c = hi_c - lo_c
    coarse_const = mc + (lo_c + 0.5 * span_c) @ dc
    module.w_coarse.copy_(span_c[:, None] * dc)
    module.coarse_center.copy_(coarse_const)
    unit_c = (((means - mc) @ dc.T - lo_c) / span_c).clamp(0, 1)
    feat_c = torch.round(unit_c * LEVELS) / LEVELS - 0.5
    residual = x - coarse_const - bilinear(feat_c, h, w) @ module.w_coarse
    cells = merge_cells(residual, h, w, 2).reshape(-1, 4 * d).numpy()
    mf, df, lo_f, hi_f = (torch.from_numpy(a) for a in _pca(cells, module.cf, max_rows))
    span_f = hi_f - lo_f
    module.w_fine.copy_(span_f[:, None] * df)
    module.bias.copy_(mf + (lo_f + 0.5 * span_f) @ df + coarse_const.repeat(4))
    for p in ("fine", "coarse"):
        getattr(module, f"{p}_scale").fill_(1.0)
        getattr(module, f"{p}_offset").fill_(-0.5)


def init(module: torch.nn.Module, tokens: np.ndarray, seed: int = 0) -> None:
    """The PCA pyramid on the training tokens (the MLP's output layer is already zero)."""
    pyramid_init(module, tokens)


def summary(module, tokens: np.ndarray, images: int = 32) -> dict:
    """Token cosine on a slice of the training tokens: amortised start vs per-image optimisation."""
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(tokens[:images], dtype=np.float32))
    with torch.no_grad():
        start = module.eval().reconstruct(x)
    qf, qc = module.optimise(x)
    with torch.no_grad():
        opt = module.decode_unit(qf, qc)
    cos = lambda a: float(F.cosine_similarity(a, x, dim=-1).mean())  # noqa: E731
    return {"train_cosine_amortised": round(cos(start), 5), "train_cosine_optimised": round(cos(opt), 5)}
