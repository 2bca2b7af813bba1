"""Activation-aware weight quantization (AWQ; Lin et al., "AWQ: Activation-aware Weight Quantization for LLM
Compression and Acceleration", MLSys 2024, arXiv:2306.00978), for one linear layer y = x @ W with W K-major [K, N].

Scale search (the paper's Sec. 3.2): per-input-channel scales s = mean|x|^alpha, alpha on a grid over [0, 1],
normalized by sqrt(max(s) * min(s)); the weights become s * W (rows scaled) and the activations x / s, and the alpha
whose quantized layer has the smallest output error on the calibration tokens wins (alpha = 0: plain quantization,
so the search never does worse on them). Clip search (the paper's released code, `auto_clip`): each block of each
output channel then takes the range ratio that minimizes that block's share of the output error.
"""

from dataclasses import dataclass

import numpy as np

ALPHA_GRID = 20  # alphas 0, 1/20, ..., 1 as in the paper's code
CLIP_RATIOS = tuple(1.0 - i / 20 for i in range(10))  # 1.0 down to 0.55
MAX_TOKENS = 1024  # calibration rows per layer for the searches (evenly strided)


@dataclass
class AwqChoice:
    """A layer's search result: `pre_scale` divides the activations (None: alpha 0, nothing inserted)."""

    alpha: float
    pre_scale: np.ndarray | None
    clip: np.ndarray  # [blocks, N] range ratios
    output_mse: float  # of the chosen quantized layer on the search tokens
    output_mse_plain: float  # alpha 0, no clipping


def search_tokens(x: np.ndarray, limit: int = MAX_TOKENS) -> np.ndarray:
    """Up to `limit` evenly strided rows of the activations [T, K], as float32."""
    x = np.asarray(x, np.float32).reshape(-1, x.shape[-1])
    return x[:: max(1, len(x) // limit)][:limit]


def _mse(x: np.ndarray, w: np.ndarray, w_q: np.ndarray) -> float:
    return float(np.mean((x @ (w - w_q)) ** 2))


def _normalized(s: np.ndarray) -> np.ndarray:
    s = np.maximum(s, 1e-4)
    return s / np.sqrt(s.max() * s.min())


def search_alpha(x: np.ndarray, w: np.ndarray, fake_quant) -> tuple[float, np.ndarray | None, dict]:
    """(best alpha, its scales or None at alpha 0, {alpha: output MSE}); `fake_quant(w) -> w_q` is the format."""
    mean_abs = np.abs(x).mean(axis=0).astype(np.float64)
    losses, best = {}, (np.inf, 0.0, None)
    for alpha in np.linspace(0.0, 1.0, ALPHA_GRID + 1):
        s = _normalized(mean_abs ** alpha) if alpha else None
        w_q = fake_quant(w) if s is None else fake_quant(w * s[:, None]) / s[:, None]
        losses[float(alpha)] = _mse(x, w, w_q)
        if losses[float(alpha)] < best[0]:
            best = (losses[float(alpha)], float(alpha), s)
    return best[1], best[2], losses


def _block_errors(x: np.ndarray, delta: np.ndarray, block: int) -> np.ndarray:
    """[blocks, N]: mean squared output error each block of input rows contributes on its own."""
    k = delta.shape[0]
    return np.stack([np.mean((x[:, i:i + block] @ delta[i:i + block]) ** 2, axis=0) for i in range(0, k, block)])


def search_clip(x: np.ndarray, w: np.ndarray, fake_quant_clip, block: int) -> np.ndarray:
    """[blocks, N] range ratio per block and output channel minimizing its output error (CLIP_RATIOS)."""
    errors = np.stack([_block_errors(x, w - fake_quant_clip(w, ratio), block) for ratio in CLIP_RATIOS])
    return np.asarray(CLIP_RATIOS)[np.argmin(errors, axis=0)]


def awq(x: np.ndarray, w: np.ndarray, fake_quant_clip, block: int) -> AwqChoice:
    """Scale then clip search for y = x @ w; `fake_quant_clip(w, clip) -> w_q`, clip a scalar or [blocks, N]."""
    x = search_tokens(x)
    w = np.asarray(w, np.float32)
    alpha, s, losses = search_alpha(x, w, lambda v: fake_quant_clip(v, 1.0))
    scaled = w if s is None else w * s[:, None].astype(np.float32)
    xs = x if s is None else x / s[None, :].astype(np.float32)
    clip = search_clip(xs, scaled, fake_quant_clip, block)
    w_q = fake_quant_clip(scaled, clip)
    return AwqChoice(alpha, s, clip, _mse(xs, scaled, w_q), losses[0.0])
