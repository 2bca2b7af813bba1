"""Entropy models of learned transform coding (Ballé et al. 2018), in PyTorch; the host range coder is
ntc_export.codec.range_coding.

EntropyBottleneck: a factorized prior, one learned univariate density per channel (appendix 6.1 of "Variational image
compression with a scale hyperprior"): the cumulative c(x) = sigmoid(f_K(...f_1(x))) with f_k(x) = softplus(H_k) x +
b_k (+ tanh(a_k) * tanh(.) between layers), monotone by construction. Training: likelihood of x + U(-1/2, 1/2) as
c(x + 1/2) - c(x - 1/2); coding: symbols round(x - median), clamped to the per-channel support between the density's
tail quantiles (found by bisection when the model enters eval mode), with the pmf on that integer support.

GaussianConditional: y ~ N(0, s^2) convolved with U(-1/2, 1/2), s from the hyper-synthesis, bounded below by
`scale_bound`; for coding s is replaced by the nearest-above entry of a fixed log-spaced scale table (an integer
index), so encoder and decoder choose the same model from the same index whatever float noise s carries.
"""

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.tracing import exporting

LIKELIHOOD_BOUND = 1e-9
SCALE_BOUND = 0.11
TAIL_MASS = 1e-6


def scale_table(low: float = SCALE_BOUND, high: float = 4096.0, levels: int = 96, dtype=torch.float32) -> torch.Tensor:
    """The fixed table of Gaussian scales the coder may use: `levels` log-spaced values from `low` to `high`."""
    return torch.exp(torch.linspace(math.log(low), math.log(high), levels, dtype=torch.float64)).to(dtype)


class LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows where it pushes x back above the bound (Ballé's lower_bound)."""

    @staticmethod
    def forward(ctx, x, bound):
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ((x >= ctx.bound) | (grad < 0)).to(grad.dtype), None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    if exporting() or not x.requires_grad:
        return x.clamp_min(bound)
    return LowerBound.apply(x, bound)


def noisy(x: torch.Tensor) -> torch.Tensor:
    """x + U(-1/2, 1/2): the training stand-in for rounding in the rate term."""
    return x + torch.empty_like(x).uniform_(-0.5, 0.5)


def straight_through_round(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, identity gradient: what the synthesis sees in training."""
    return x + (torch.round(x) - x).detach()


class EntropyBottleneck(nn.Module):
    """Factorized prior over C channels (see module docstring). Inputs are [B, C, ...]."""

    def __init__(self, channels: int, filters: tuple = (3, 3, 3), init_scale: float = 10.0,
                 tail_mass: float = TAIL_MASS, max_support: int = 512):
        super().__init__()
        self.channels, self.tail_mass, self.max_support = channels, tail_mass, max_support
        dims = (1,) + tuple(filters) + (1,)
        scale = init_scale ** (1.0 / (len(dims) - 1))
        self.matrices, self.biases, self.factors = nn.ParameterList(), nn.ParameterList(), nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, dims[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))
        # Set on entering eval mode (`update`): per-channel median, integer support [lo, hi] and pmf on it.
        for name in ("medians", "support_lo", "support_hi", "pmf"):
            self.register_buffer(name, None, persistent=False)

    def logits_cumulative(self, x: torch.Tensor) -> torch.Tensor:
        """[C, 1, N] -> the logit of each channel's cumulative at x, [C, 1, N]."""
        logits = x
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            logits = torch.matmul(F.softplus(matrix.to(x.dtype)), logits) + bias.to(x.dtype)
            if i < len(self.factors):
                logits = logits + torch.tanh(self.factors[i].to(x.dtype)) * torch.tanh(logits)
        return logits

    def _channels_first(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(0, 1).reshape(self.channels, 1, -1)

    def _back(self, v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        shape = (like.shape[1], like.shape[0]) + tuple(like.shape[2:])
        return v.reshape(shape).transpose(0, 1)

    def likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """P(bin of width 1 centred at x) per element of x [B, C, ...] (x noisy in training, integer-offset at eval)."""
        v = self._channels_first(x)
        lower = self.logits_cumulative(v - 0.5)
        upper = self.logits_cumulative(v + 0.5)
        sign = -torch.sign(lower + upper).detach()  # evaluate in the tail with the smaller sigmoid (precision)
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return self._back(lower_bound(p, LIKELIHOOD_BOUND), x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: (straight-through quantised x around the medians, likelihood of the noisy x)."""
        med = self._medians_now().reshape(1, -1, *([1] * (x.dim() - 2)))
        return straight_through_round(x - med) + med, self.likelihood(noisy(x))

    # ---- coding tables -------------------------------------------------------------------------------------------

    @torch.no_grad()
    def _quantile(self, target: float, iters: int = 60) -> torch.Tensor:
        """Per-channel x with sigmoid(logits_cumulative(x)) = target, by bisection on a bracket grown until it holds."""
        logit = math.log(target / (1 - target))
        lo = torch.full((self.channels, 1, 1), -1.0, dtype=torch.float64)
        hi = torch.full((self.channels, 1, 1), 1.0, dtype=torch.float64)
        for _ in range(40):
            lo = torch.where(self.logits_cumulative(lo) > logit, lo * 2, lo)
            hi = torch.where(self.logits_cumulative(hi) < logit, hi * 2, hi)
        for _ in range(iters):
            mid = (lo + hi) / 2
            above = self.logits_cumulative(mid) > logit
            hi, lo = torch.where(above, mid, hi), torch.where(above, lo, mid)
        return ((lo + hi) / 2).reshape(-1)

    def _medians_now(self) -> torch.Tensor:
        return self.medians.float() if self.medians is not None else self._quantile(0.5, iters=30).float()

    @torch.no_grad()
    def update(self) -> None:
        """Coding tables from the current density: medians, per-channel integer support (tail quantiles, at most
        `max_support` symbols) and the pmf on it [C, L] (rows zero-padded to the longest support). All in float64:
        the tables must not depend on float32 kernel choices (memory alignment, batch) of the machine."""
        self.medians = self._quantile(0.5)
        q_lo, q_hi = self._quantile(self.tail_mass / 2), self._quantile(1 - self.tail_mass / 2)
        lo = torch.floor(q_lo - self.medians).clamp(-(self.max_support // 2), 0)
        hi = torch.ceil(q_hi - self.medians).clamp(0, self.max_support // 2)
        length = int((hi - lo).max().item()) + 1
        k = lo[:, None] + torch.arange(length, dtype=torch.float64)[None]  # [C, L] symbols
        x = (k + self.medians[:, None]).reshape(self.channels, 1, length)
        lower = torch.sigmoid(self.logits_cumulative(x - 0.5))
        upper = torch.sigmoid(self.logits_cumulative(x + 0.5))
        pmf = (upper - lower).reshape(self.channels, length).clamp_min(0)
        pmf[k > hi[:, None]] = 0.0
        self.support_lo, self.support_hi, self.pmf = lo.to(torch.int64), hi.to(torch.int64), pmf

    def reset(self) -> None:
        """Back to training: the tables go (they are rebuilt from the trained density by `update`)."""
        self.medians = self.support_lo = self.support_hi = self.pmf = None

    def symbols(self, x: torch.Tensor) -> torch.Tensor:
        """Coding: x [B, C, ...] -> integer symbols (int64) on each channel's support, 0-based (symbol - lo)."""
        med = self.medians.reshape(1, -1, *([1] * (x.dim() - 2)))
        lo = self.support_lo.reshape(med.shape)
        span = (self.support_hi - self.support_lo).reshape(med.shape)
        return (torch.round(x - med).to(torch.int64) - lo).clamp(torch.zeros_like(span), span)

    def dequantize(self, symbols: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """0-based symbols [B, C, ...] -> the values they stand for (float32, or float64 for the coder's scales)."""
        shape = (1, -1) + (1,) * (symbols.dim() - 2)
        return ((symbols + self.support_lo.reshape(shape)).double() + self.medians.reshape(shape)).to(dtype)

    def pmf_table(self) -> np.ndarray:
        """[C, L] float64 pmfs of the 0-based symbols (what the host coder's Categorical models get)."""
        return self.pmf.numpy()


class GaussianConditional(nn.Module):
    """Zero-mean Gaussian conditional with a scale lower bound and a fixed scale table (see module docstring)."""

    def __init__(self, scale_bound: float = SCALE_BOUND, table: torch.Tensor | None = None, max_symbol: int = 32767):
        super().__init__()
        self.scale_bound, self.max_symbol = scale_bound, max_symbol
        self.register_buffer("scale_table", scale_table() if table is None else table.float(), persistent=False)

    def likelihood(self, y: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """P(bin of width 1 centred at y | N(0, s^2)) elementwise."""
        s = lower_bound(scales, self.scale_bound)
        v = torch.abs(y)
        upper = 0.5 * torch.erfc(-(0.5 - v) / (s * math.sqrt(2)))  # Phi((1/2 - |y|) / s)
        lower = 0.5 * torch.erfc(-(-0.5 - v) / (s * math.sqrt(2)))
        return lower_bound(upper - lower, LIKELIHOOD_BOUND)

    def forward(self, y: torch.Tensor, scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: (straight-through rounded y, likelihood of the noisy y)."""
        return straight_through_round(y), self.likelihood(noisy(y), scales)

    def scale_indexes(self, scales: torch.Tensor) -> torch.Tensor:
        """Index of the smallest table scale >= s (the last entry for larger s), int64: the coder's model choice."""
        table = scale_table(dtype=scales.dtype)[:-1] if scales.dtype == torch.float64 else self.scale_table[:-1]
        # the count of (ascending) table scales < s; a binary search, not a [n, table] comparison (6144-channel y)
        return torch.searchsorted(table, scales.contiguous(), right=False)

    def quantize(self, y: torch.Tensor) -> torch.Tensor:
        """The coder's symbols: round(y) clamped to [-max_symbol, max_symbol] (still float)."""
        return torch.round(y).clamp(-self.max_symbol, self.max_symbol)
