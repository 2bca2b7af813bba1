"""Training recipe of `vq`: config per rate, the PCA + k-means start, codebook usage summary (see recipes.py).

Rate: a 2x2 token cell costs G * S * ceil(log2 K) bits against 4 * D * 16 for fp16 tokens, so with K = 256 and one
stage G = 4 * D * 2 / rate groups (16x: 192 one-byte indices per cell, 64x: 48). Group size d (latent L = G * d):
3 below 32x, else 4. Measured on the photo corpus (linear VQ, k-means on 20k train cells, 100 other train images):
interleaved groups (group g = principal directions g, g+G, ...) beat groups of consecutive directions at 64x
(token cosine 0.966 vs 0.960 at L = 192, d = 4); at 16x d = 3 (L = 576) reached 0.9905 where L = 384 with d = 2 or
with two residual stages of d = 4 reached 0.987 (the truncation to L dims dominates); d = 6 or 8 at 64x gained
0.001 for a larger basis. Stages S > 1 stay available (`--set stages=2`).

Zoo checkpoints (photos_train.npz: `ntc-export tokens --builtin photos --split train`, the same tokens as
`--data builtin:photos`):
    python scripts/build_zoo_compressors.py --arch vq --data photos_train.npz --rates 16 --epochs 3 \
        --threads 1 --no-progress --log /tmp/vq_log_16.json
    python scripts/build_zoo_compressors.py --arch vq --data photos_train.npz --rates 64 --epochs 5 \
        --threads 1 --no-progress --log /tmp/vq_log_64.json
"""

import math

import numpy as np
import torch

from ..models import vq as _vq  # noqa: F401  (registers the arch for `build`)
from ..util.errors import NtcError

ZOO_PREFIX = "vq"
FP16_BITS = 16


def config_for_rate(rate: float, input_dim: int = 384, codewords: int = 256, stages: int = 1,
                    group_dim: int | None = None, **overrides) -> dict:
    """Config of a vq compressor storing tokens at `rate`x fewer bytes than fp16 (index bits per cell fit the
    budget 4 * D * 16 / rate; latent L = G * d at most 4 * D)."""
    if rate <= 0:
        raise NtcError(f"--rate must be positive, got {rate}")
    bits = max(1, math.ceil(math.log2(codewords)))
    indices = int(4 * input_dim * FP16_BITS / rate) // bits
    groups = indices // stages
    if groups < 1:
        raise NtcError(f"rate {rate:g}x leaves under {bits * stages} bits per 2x2 cell: no vq config fits")
    d = group_dim or (3 if rate < 32 else 4)
    d = max(1, min(d, 4 * input_dim // groups))
    config = dict(input_dim=input_dim, latent=groups * d, groups=groups, stages=stages, codewords=codewords, dim=48,
                  depth=2, heads=4, window=4, mlp_ratio=2.0, enc_hidden=0, decay=0.99, dead_after=100,
                  commitment=0.25, seed=0, num_classes=0)
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config


def interleaved_order(latent: int, groups: int) -> np.ndarray:
    """Principal-direction index of each basis row: row g*d + j holds direction j*G + g (groups ordered by
    variance, each spanning the spectrum)."""
    d = latent // groups
    return np.arange(latent).reshape(d, groups).T.reshape(-1)


def _kmeans_pp(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding per group: x [G, N, d] -> [G, K, d] (each new centre drawn with probability ~ squared
    distance to the nearest centre so far)."""
    g, n, d = x.shape
    rows = torch.arange(g)
    c = torch.empty(g, k, d)
    c[:, 0] = x[rows, torch.randint(0, n, (g,), generator=generator)]
    dmin = (x - c[:, :1]).pow(2).sum(-1)
    for j in range(1, k):
        pick = torch.multinomial(dmin.double() + 1e-30, 1, generator=generator)[:, 0]
        c[:, j] = x[rows, pick]
        dmin = torch.minimum(dmin, (x - c[:, j:j + 1]).pow(2).sum(-1))
    return c


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator, chunk: int = 8192) -> torch.Tensor:
    """Lloyd's k-means per group: x [G, N, d] -> centroids [G, K, d] (seeded k-means++ start; an emptied cluster
    takes a random point)."""
    from ..models.vector_quantizer import nearest

    g, n, d = x.shape
    c = _kmeans_pp(x, k, generator)
    for _ in range(iters):
        idx = torch.cat([nearest(x[:, s:s + chunk], c) for s in range(0, n, chunk)], 1)
        flat = (idx + torch.arange(g).unsqueeze(1) * k).reshape(-1)
        counts = torch.bincount(flat, minlength=g * k).reshape(g, k).float()
        sums = torch.zeros(g * k, d).index_add_(0, flat, x.reshape(-1, d)).reshape(g, k, d)
        c = torch.where(counts[..., None] > 0, sums / counts.clamp_min(1)[..., None], c)
        empty = (counts == 0).nonzero()
        if len(empty):
            c[empty[:, 0], empty[:, 1]] = x[empty[:, 0], torch.randint(0, n, (len(empty),), generator=generator)]
    return c


@torch.no_grad()
def init(module: torch.nn.Module, tokens: np.ndarray, seed: int = 0, max_cells: int = 40_000,
         kmeans_cells: int = 16_384, iters: int = 8) -> None:
    """PCA of 2x2 cells (interleaved into groups) for the linear part, then k-means codebooks stage by stage on the
    residuals of corpus latents (seeded subsamples)."""
    from ..evaluate.pca_reference import fit_basis
    from ..models.vector_quantizer import gather_codes, nearest

    module._check_tokens(torch.from_numpy(tokens[:1]))
    cells = module.cells(torch.from_numpy(np.ascontiguousarray(tokens, np.float32))).reshape(-1, module.center.numel())
    center, directions = fit_basis(cells.numpy()[None], max_tokens=max_cells, seed=seed)
    if len(directions) < module.latent:
        raise NtcError(f"vq init: {len(directions)} principal directions from the training tokens, the latent needs "
                       f"{module.latent}; train on more images")
    basis = directions[: module.latent][interleaved_order(module.latent, module.groups)]
    cell_var = float(((cells - torch.from_numpy(center)) ** 2).sum(-1).mean())
    module.init_linear(center, basis, cell_var)
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(cells), generator=gen)[:kmeans_cells]
    z = module.latent_of_cells(cells[pick][None])[0]
    r = z.reshape(-1, module.groups, module.group_dim).transpose(0, 1).contiguous()
    books = []
    for _ in range(module.stages):
        c = kmeans(r, module.codewords, iters, gen)
        r = r - gather_codes(c, nearest(r, c))
        books.append(c)
    module.vq.init_codebooks(torch.stack(books, 1))


@torch.no_grad()
def summary(module: torch.nn.Module, tokens: np.ndarray, max_images: int = 256) -> dict:
    """Codebook usage on (the first `max_images` of) the training tokens: perplexity per codebook (G*S values,
    group-major), dead codewords (never chosen there), bits per cell and per token, restarts during training."""
    from ..models.vector_quantizer import perplexity

    module.eval()
    counts = torch.zeros(module.groups, module.stages, module.codewords)
    for start in range(0, min(len(tokens), max_images), 32):
        t = torch.from_numpy(np.ascontiguousarray(tokens[start:min(start + 32, max_images)], np.float32))
        _, idx = module.quantize_cells(module.cells(t))
        counts += module.vq.counts(idx.reshape(-1, module.groups, module.stages))
    ppl = perplexity(counts).reshape(-1)
    return {"bits_per_cell": module.bits_per_cell, "bits_per_token": module.bits_per_cell / 4,
            "perplexity_per_codebook": [round(float(p), 1) for p in ppl],
            "perplexity_mean": round(float(ppl.mean()), 1), "perplexity_min": round(float(ppl.min()), 1),
            "dead_codes": int((counts == 0).sum()), "codewords_total": int(counts.numel()),
            "restarts": int(module.vq.restarts.sum())}
