"""Product + residual vector quantiser: G groups x S residual stages x K codewords of d dims each.

A latent [N, G*d] is split into G groups of d dims; each group is coded by S residual stages (stage s quantises what
stages 0..s-1 left), each stage by its own codebook of K codewords, so a vector costs G*S indices of ceil(log2 K) bits.

Nearest codeword: squared distance ||r||^2 - 2 r E^T + ||e||^2 in fp32, ArgMin (first index on exact ties).
Training: straight-through estimator (the encoder sees the quantisation error as identity), commitment loss on the
encoder, codebooks by exponential moving averages of their assigned vectors (no gradients; `apply_pending` after each
optimiser step), and dead-code restarts: a codeword unused for `dead_after` consecutive steps is replaced by a random
vector its codebook was asked to code in the current batch. Usage per codebook is reported as perplexity
exp(-sum p log p) of the index histogram (K when all codewords are used equally, 1 when one takes everything).
"""

import math

import torch
import torch.nn as nn

from ..util.errors import NtcError


def index_bits(codewords: int) -> int:
    """Bits of one stored index: ceil(log2 K) (at least 1)."""
    return max(1, math.ceil(math.log2(codewords)))


def nearest(r: torch.Tensor, books: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codeword per vector: r [G, N, d], books [G, K, d] -> [G, N] (int64).

    Distances ||r||^2 - 2 r.e + ||e||^2 in fp32 as one MatMul of augmented vectors [r, 1, ||r||^2] . [-2e, ||e||^2, 1]
    (a d-wide MatMul plus two broadcast adds over [G, N, K] cost three times as much on a CPU), then ArgMin."""
    r, books = r.float(), books.float()
    r_aug = torch.cat([r, torch.ones_like(r[..., :1]), r.pow(2).sum(-1, keepdim=True)], -1)
    e_aug = torch.cat([-2.0 * books, books.pow(2).sum(-1, keepdim=True), torch.ones_like(books[..., :1])], -1)
    return torch.matmul(r_aug, e_aug.transpose(1, 2)).argmin(-1)


def gather_codes(books: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """books [G, K, d], idx [G, N] -> codewords [G, N, d]."""
    g, k, d = books.shape
    flat = idx + torch.arange(g, device=idx.device).unsqueeze(1) * k
    return books.reshape(g * k, d)[flat]


def perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of index histograms [..., K] -> [...] (0 * log 0 taken as 0; an empty histogram gives 1)."""
    counts = counts.double()
    p = counts / counts.sum(-1, keepdim=True).clamp_min(1e-12)
    h = -(p * torch.log(p.clamp_min(1e-300))).sum(-1)
    return torch.exp(h).float()


class ProductResidualVQ(nn.Module):
    """G x S codebooks of K codewords [G, S, K, d] (see module docstring); `codebooks` is the only stored state."""

    def __init__(self, groups: int, stages: int, codewords: int, dim: int, decay: float = 0.99,
                 dead_after: int = 100, seed: int = 0):
        super().__init__()
        if min(groups, stages, dim) < 1 or codewords < 2 or not 0.0 < decay < 1.0:
            raise NtcError(f"vector quantiser needs groups, stages, dim >= 1, codewords >= 2 and 0 < decay < 1 "
                           f"(got {groups}, {stages}, {dim}, {codewords}, {decay})")
        self.groups, self.stages, self.codewords, self.dim = groups, stages, codewords, dim
        self.decay, self.dead_after, self.seed = decay, dead_after, seed
        self.register_buffer("codebooks", torch.randn(groups, stages, codewords, dim) * 0.1)
        # Training state only (not in checkpoints): EMA counts and sums, steps since last use, restarts so far.
        self.register_buffer("ema_count", torch.ones(groups, stages, codewords), persistent=False)
        self.register_buffer("ema_sum", self.codebooks.clone(), persistent=False)
        self.register_buffer("idle", torch.zeros(groups, stages, codewords, dtype=torch.long), persistent=False)
        self.register_buffer("restarts", torch.zeros(groups, stages, dtype=torch.long), persistent=False)
        self._pending = None
        self._generator = None

    @property
    def bits(self) -> int:
        return index_bits(self.codewords)

    @torch.no_grad()
    def init_codebooks(self, books: torch.Tensor) -> None:
        """Set every codebook [G, S, K, d] (k-means on corpus latents) and restart the EMA state from it."""
        if tuple(books.shape) != tuple(self.codebooks.shape):
            raise NtcError(f"codebooks must be {list(self.codebooks.shape)}, got {list(books.shape)}")
        self.codebooks.copy_(books)
        self.ema_count.fill_(1.0)
        self.ema_sum.copy_(self.codebooks)
        self.idle.zero_()
        self.restarts.zero_()

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """z [N, G, d] -> (z_hat [N, G, d], indices [N, G, S] int64, each stage's input [G, N, d]); no gradients."""
        with torch.no_grad():
            r = z.detach().float().transpose(0, 1)
            z_hat = torch.zeros_like(r)
            idx, inputs = [], []
            for s in range(self.stages):
                books = self.codebooks[:, s]
                i = nearest(r, books)
                q = gather_codes(books, i)
                inputs.append(r)
                idx.append(i)
                z_hat = z_hat + q
                r = r - q
            return z_hat.transpose(0, 1), torch.stack(idx, -1).transpose(0, 1), inputs

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """indices [N, G, S] -> z_hat [N, G, d] (stages summed)."""
        n = indices.shape[0]
        flat = indices.long() + (torch.arange(self.groups * self.stages, device=indices.device)
                                 .reshape(self.groups, self.stages) * self.codewords)
        return self.codebooks.reshape(-1, self.dim)[flat].sum(2).reshape(n, self.groups, self.dim)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training: z [N, G, d] -> (straight-through z_q, mean squared commitment error, indices [N, G, S]).
        In training mode the batch's assignments wait for `apply_pending` (after the optimiser step)."""
        z_hat, idx, inputs = self.quantize(z)
        if self.training:
            self._pending = (inputs, idx)
        commit = (z - z_hat).pow(2).sum(-1).mean()
        return z + (z_hat - z).detach(), commit, idx

    def counts(self, indices: torch.Tensor) -> torch.Tensor:
        """Index histogram per codebook: indices [N, G, S] -> [G, S, K]."""
        g, s, k = self.groups, self.stages, self.codewords
        flat = indices.reshape(-1, g * s).long() + torch.arange(g * s, device=indices.device) * k
        return torch.bincount(flat.reshape(-1), minlength=g * s * k).reshape(g, s, k).float()

    @torch.no_grad()
    def apply_pending(self) -> dict:
        """EMA codebook update and dead-code restarts from the last training batch; {restarted: n}."""
        if self._pending is None:
            return {"restarted": 0}
        inputs, idx = self._pending
        self._pending = None
        restarted = 0
        for s, r in enumerate(inputs):
            restarted += self._update_stage(s, r, idx[:, :, s].transpose(0, 1))
        return {"restarted": restarted}

    def _update_stage(self, s: int, r: torch.Tensor, idx: torch.Tensor) -> int:
        """One stage's EMA step: r [G, N, d] the vectors it coded, idx [G, N] their codewords."""
        g, k, d = self.groups, self.codewords, self.dim
        flat = (idx + torch.arange(g).unsqueeze(1) * k).reshape(-1)
        n = torch.bincount(flat, minlength=g * k).reshape(g, k).float()
        sums = torch.zeros(g * k, d).index_add_(0, flat, r.reshape(-1, d)).reshape(g, k, d)
        a = self.decay
        self.ema_count[:, s].mul_(a).add_(n, alpha=1 - a)
        self.ema_sum[:, s].mul_(a).add_(sums, alpha=1 - a)
        total = self.ema_count[:, s].sum(-1, keepdim=True)
        smoothed = (self.ema_count[:, s] + 1e-5) / (total + k * 1e-5) * total  # Laplace: no division by zero
        self.codebooks[:, s] = self.ema_sum[:, s] / smoothed.unsqueeze(-1)
        self.idle[:, s] = torch.where(n > 0, torch.zeros_like(self.idle[:, s]), self.idle[:, s] + 1)
        return self._restart_dead(s, r)

    def _restart_dead(self, s: int, r: torch.Tensor) -> int:
        """Codewords idle for more than `dead_after` steps take random vectors of this batch (per group)."""
        dead = (self.idle[:, s] > self.dead_after).nonzero()
        if len(dead) == 0:
            return 0
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(self.seed)
        pick = torch.randint(0, r.shape[1], (len(dead),), generator=self._generator)
        gi, ki = dead[:, 0], dead[:, 1]
        fresh = r[gi, pick]
        self.codebooks[gi, s, ki] = fresh
        self.ema_sum[gi, s, ki] = fresh
        self.ema_count[gi, s, ki] = 1.0
        self.idle[gi, s, ki] = 0
        self.restarts[:, s].index_add_(0, gi, torch.ones_like(gi))
        return len(dead)
