"""Training recipe of `hyperprior`: config per rate, the PCA-of-cells start with water-filled channel gains, and the
estimated-vs-actual bytes summary (see ntc_export.train.recipes).

Rate control: `target_rate` in the config; the loss weight lambda follows it by dual ascent during training (the model's
`after_step`), so one run per rate needs no lambda sweep. The start is the linear coder at that rate: PCA of 2x2
token cells, and one quantiser step for all channels from reverse water-filling on the cells' PCA spectrum.

Zoo (photo corpus train split, all 2120 images; `--threads 1` on the 2-core machine shared with other jobs; the
checkpoints as committed, with their training wall times):
    python scripts/build_zoo_compressors.py --arch hyperprior --data photos_train.npz --rates 14 \
        --epochs 5 --threads 1 --no-progress --log hp_log_x14.json                 # hp_x14.pt   259 s
    python scripts/build_zoo_compressors.py --arch hyperprior --data photos_train.npz --rates 30 \
        --epochs 5 --threads 1 --no-progress --log hp_log_x30.json                 # hp_x30.pt   383 s
    python scripts/build_zoo_compressors.py --arch hyperprior --data photos_train.npz --rates 70 \
        --epochs 5 --threads 1 --no-progress --log hp_log_x70.json                 # hp_x70.pt   439 s
    python scripts/build_zoo_compressors.py --arch hyperprior --data photos_train.npz --rates 128 \
        --epochs 5 --threads 1 --no-progress --log hp_log_x128.json                # hp_x128.pt  392 s
The measured rates land ~10% above the targets (15.7x, 34x, 76x, 138x on val): lambda's dual ascent reads the
noisy-quantisation rate of training, which overstates the rate of the discrete coder.
"""

import numpy as np
import torch

from ..models import hyperprior as _arch  # noqa: F401  (registers the arch until the registry imports it)
from ..util.errors import NtcError

ZOO_PREFIX = "hp"
FP16_BITS_PER_VALUE = 16
SIDE_INFO_SHARE = 0.06  # share of the bits the water-filling init leaves to z (measured z/y at init is a few %)


MAX_BITS_PER_CHANNEL = 12  # the init's step never asks more of a channel (y stays far inside the coder's range)


def latent_for_rate(rate: float) -> tuple[int, int, int]:
    """(latent channels M per 2x2 cell, analysis-residual width, synthesis width): more channels at more bytes;
    below 20x the residuals' weights go to channels instead (checkpoints <= 1.2 MB; on the photo corpus PCA of cells
    kept token cosine 0.974 / 0.980 / 0.986 at 224 / 288 / 384 channels unquantised)."""
    if rate < 20:
        return 288, 0, 32
    if rate < 45:
        return 160, 32, 64
    if rate < 96:
        return 112, 32, 64
    return 64, 32, 64


def config_for_rate(rate: float, input_dim: int = 384, **overrides) -> dict:
    """Config of a hyperprior coder aiming at `rate`x fewer bytes than fp16 tokens (payload bytes, header included)."""
    if rate <= 0:
        raise NtcError(f"--rate must be positive, got {rate}")
    latent, enc_dim, dim = latent_for_rate(rate)
    # heads of 16 channels: TensorRT-RTX fuses no attention with 8-channel heads (engine build fails)
    config = dict(input_dim=input_dim, latent=latent, hyper=32, merge=2, enc_dim=enc_dim, dim=dim, depth=1,
                  heads=dim // 16, window=4, mlp_ratio=2.0, target_rate=float(rate), lam=30.0, lam_step=0.05,
                  num_classes=0)
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config


def water_fill(variances: np.ndarray, bits: float) -> float:
    """Distortion D per channel with sum_i max(0, log2(var_i / D) / 2) = bits (reverse water-filling)."""
    v = np.asarray(variances, np.float64)
    v = v[v > 0]
    lo, hi = np.log(v.min()) - 2 * bits * np.log(2) / len(v) - 1, np.log(v.max())
    for _ in range(100):
        mid = (lo + hi) / 2
        spent = np.maximum(0.0, 0.5 * np.log2(v / np.exp(mid))).sum()
        lo, hi = (mid, hi) if spent > bits else (lo, mid)
    return float(np.exp((lo + hi) / 2))


def pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, top-k principal directions [k, D], their variances) of rows x [n, D], from the covariance's
    eigendecomposition (a D x D problem: far cheaper than an SVD of the rows for n >> D)."""
    center = x.mean(0)
    xc = torch.from_numpy(x - center).double()
    if len(x) < x.shape[1]:  # fewer rows than dimensions: the rows' SVD is the smaller problem
        _, sv, vt = torch.linalg.svd(xc, full_matrices=False)
        return center.astype(np.float32), vt[:k].float().numpy(), (sv[:k] ** 2 / len(x)).numpy()
    evals, evecs = torch.linalg.eigh(xc.T @ xc / len(x))
    order = torch.argsort(evals, descending=True)[:k]
    return center.astype(np.float32), evecs[:, order].T.float().numpy(), evals[order].clamp_min(0).numpy()


@torch.no_grad()
def init(module: torch.nn.Module, tokens: np.ndarray, seed: int = 0, max_cells: int = 30_000) -> None:
    """PCA of the model's 2x2 token cells on `tokens` [N, h*w, D] (seeded subsample), one quantiser step for all
    channels from water-filling the target bits per cell, h_s's output bias at each channel's std in steps."""
    cells = module.cells(torch.from_numpy(tokens)).numpy()
    per_image = cells.shape[1]
    flat = cells.reshape(-1, cells.shape[-1])
    if len(flat) < module.latent:
        raise NtcError(f"hyperprior init: {len(flat)} token cells in the training tokens, the latent needs at least "
                       f"{module.latent}; train on more images")
    sub = flat[np.random.default_rng(seed).choice(len(flat), min(len(flat), max_cells), replace=False)]
    center, directions, var = pca(sub, module.latent)
    fp16_bytes = tokens.shape[1] * tokens.shape[2] * FP16_BITS_PER_VALUE / 8
    body_bits = max(8.0, (fp16_bytes / module.config["target_rate"] - module.overhead_bytes()) * 8)
    bits_per_cell = min(body_bits * (1 - SIDE_INFO_SHARE) / per_image, MAX_BITS_PER_CHANNEL * module.latent)
    step = np.sqrt(12 * water_fill(var, bits_per_cell))
    module.center.copy_(torch.from_numpy(center))
    module.basis.copy_(torch.from_numpy(directions))
    module.log_gain.fill_(float(-np.log(step)))
    module.h_s.out.weight.mul_(0.1)
    module.h_s.out.bias.copy_(torch.from_numpy(np.log(np.maximum(np.sqrt(var) / step, 0.11))).float())


def summary(module: torch.nn.Module, tokens: np.ndarray, images: int = 64) -> dict:
    """Estimated vs actual payload bytes per image on the first `images` of `tokens`, and the final lambda."""
    was_training = module.training
    module.eval()
    sample = np.ascontiguousarray(tokens[:images], dtype=np.float32)
    payloads = module.encode(sample)
    actual = np.array([len(p) for p in payloads], np.float64)
    y_bits, z_bits = module.estimate_bits(sample)
    overhead = module.overhead_bytes()
    estimate = (y_bits + z_bits) / 8 + overhead
    decoded = module.decode(payloads)
    cos = np.sum(decoded * sample, -1) / (np.linalg.norm(decoded, axis=-1) * np.linalg.norm(sample, axis=-1) + 1e-12)
    module.train(was_training)
    return {"images": len(sample), "estimated_bytes": round(float(estimate.mean()), 1),
            "actual_bytes": round(float(actual.mean()), 1),
            "estimated_body_bytes": round(float(estimate.mean() - overhead), 1),
            "actual_body_bytes": round(float(actual.mean() - overhead), 1),
            "z_bytes": round(float(z_bits.mean() / 8), 1), "rate": round(float(sample[0].size * 2 / actual.mean()), 2),
            "cosine": round(float(cos.mean()), 5), "lambda": round(module.lam(), 4)}
