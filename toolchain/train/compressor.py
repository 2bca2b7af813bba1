"""Training loop for token compressors on real visual tokens.

Start: each family's data-driven initialisation (`ntc_export.train.<arch>.init`: PCA of token cells, k-means
codebooks), so training only ever improves on a linear transform coder. Each step adds the family's own loss term
(`train_forward`: rate, commitment) and runs its `after_step` hook (EMA codebooks, dead-code restarts).
Loss: token MSE over the data's variance around its mean token, + (1 - cosine) per token, + the mean-pooled token's
MSE over the variance of pooled tokens. DINOv2 tokens share a large mean component, so MSE relative to the raw
square and cosine stay high while image-specific detail is lost; variance-relative terms weigh that detail more.
No term reads labels or an evaluation probe.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..util.errors import NtcError


@dataclass
class TrainResult:
    module: torch.nn.Module
    history: list[dict] = field(default_factory=list)  # one {epoch, loss, cosine} per epoch (train, simulated BC)
    summary: dict = field(default_factory=dict)  # the family's own report on the training tokens (codebook use, bits)


def load_patch_tokens(data: str, split: str = "train") -> tuple[np.ndarray, np.ndarray | None]:
    """`builtin:digits` / `builtin:skimage` / `builtin:photos` (the given split) or a TokenSet .npz -> (patch tokens
    [N, h*w, D], labels)."""
    from ..data.tokens import SPLITS, builtin_tokens, load_tokens

    if data.startswith("builtin:"):
        name = data.split(":", 1)[1]
        if name not in SPLITS:
            raise NtcError(f"unknown built-in token set {name!r}; choose from {', '.join(f'builtin:{n}' for n in SPLITS)}")
        split = split if split in SPLITS[name] else "all"
        ts = builtin_tokens(name, 224, split=split)
    else:
        ts = load_tokens(Path(data))
    return np.ascontiguousarray(ts.patch_tokens, dtype=np.float32), ts.labels


@dataclass
class LossScales:
    token_var: float  # mean squared deviation of tokens from the mean token
    pooled_var: float  # the same for mean-pooled (per-image) tokens

    @classmethod
    def of(cls, data: torch.Tensor) -> "LossScales":
        pooled = data.mean(1)
        return cls(float((data - data.mean((0, 1))).pow(2).mean()), float((pooled - pooled.mean(0)).pow(2).mean()))


def token_loss(pred: torch.Tensor, target: torch.Tensor, scales: LossScales) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, mean cosine) for reconstructed tokens [B, N, D] (see module docstring)."""
    cos = F.cosine_similarity(pred, target, dim=-1).mean()
    p, t = pred.mean(1), target.mean(1)
    loss = F.mse_loss(pred, target) / scales.token_var + (1.0 - cos) + F.mse_loss(p, t) / scales.pooled_var
    return loss, cos


def train_compressor(arch: str, config: dict, tokens: np.ndarray, epochs: int = 5, batch: int = 16, lr: float = 2e-3,
                     seed: int = 0, progress: bool = True, init: dict | None = None) -> TrainResult:
    """Fit a compressor (simulated BC in the loop) on patch tokens [N, h*w, D]; seeded, AdamW + one-cycle schedule.

    `init`: a state_dict to start from (fine-tuning); otherwise the model starts as the linear coder (see above)."""
    from ..models import build
    from .recipes import recipe

    family = recipe(arch)
    if epochs < 1 or batch < 1:
        raise NtcError(f"epochs and batch must be >= 1 (got {epochs}, {batch})")
    if tokens.ndim != 3 or len(tokens) == 0:
        raise NtcError(f"training tokens must be [N, h*w, D] with N > 0, got shape {list(tokens.shape)}")
    torch.manual_seed(seed)
    module = build(arch, config)
    if init is not None:
        module.load_state_dict(init)
    else:
        family.init(module, tokens, seed)
    data = torch.from_numpy(tokens)
    scales = LossScales.of(data)
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(data) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(seed)
    result = TrainResult(module)
    bar, task = _progress(progress, steps, f"train {arch}")
    try:
        for epoch in range(epochs):
            module.train()
            total, cos_sum, count = 0.0, 0.0, 0
            for idx in np.array_split(rng.permutation(len(data)), -(-len(data) // batch)):
                x = data[idx]
                pred, extra, _ = module.train_forward(x)
                loss, cos = token_loss(pred, x, scales)
                loss = loss + extra
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
                opt.step()
                sched.step()
                module.after_step(x)
                total += loss.item() * len(idx)
                cos_sum += cos.item() * len(idx)
                count += len(idx)
                if bar:
                    bar.update(task, advance=1, description=f"epoch {epoch + 1}/{epochs} loss {total / count:.4f}")
            result.history.append({"epoch": epoch + 1, "loss": total / count, "cosine": cos_sum / count})
    finally:
        if bar:
            bar.stop()
    module.eval()
    result.summary = family.summary(module, tokens) if hasattr(family, "summary") else {}
    return result


def _progress(enabled: bool, total: int, label: str):
    if not enabled:
        return None, None
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True)
    bar.start()
    return bar, bar.add_task(label, total=total)
