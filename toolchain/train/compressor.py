"""Training loop for token compressors on real visual tokens.

Loss: token MSE over the data's variance around its mean token, + (1 - cosine) per token, + the mean-pooled token's
MSE over the variance of pooled tokens. DINOv2 tokens share a large mean component, so MSE relative to the raw
square and cosine stay high while image-specific detail is lost; variance-relative terms weigh that detail more.
Optional terms (weights `pooled_std_weight`, `probe_weight`): the pooled token's MSE with each channel standardised
(what a StandardScaler + linear probe reads: low-variance channels count as much as loud ones), and a distillation term
on a frozen linear probe fitted on the original training tokens (MSE of its logits over their variance).
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..util.errors import NtcError

TRAINABLE = ("bc_autoencoder",)


@dataclass
class TrainResult:
    module: torch.nn.Module
    history: list[dict] = field(default_factory=list)  # one {epoch, loss, cosine} per epoch (train, simulated BC)


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


def bc_autoencoder_config(rate: float, input_dim: int = 384, merge: int = 1, **overrides) -> dict:
    """Config of a bc_autoencoder storing tokens at `rate`x fewer bytes than fp16 (16x16 token grids)."""
    from ..models.bc_autoencoder import latent_for_rate

    if rate <= 0:
        raise NtcError(f"--rate must be positive, got {rate}")
    latent_grid = 16 // merge
    config = dict(input_dim=input_dim, latent=latent_for_rate(rate, input_dim, merge), merge=merge, bc_format="bc5",
                  dim=128, depth=2, heads=4, window=8 if latent_grid >= 8 else 4, mlp_ratio=2.0, num_classes=0)
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config


@dataclass
class LossScales:
    token_var: float  # mean squared deviation of tokens from the mean token
    pooled_var: float  # the same for mean-pooled (per-image) tokens
    pooled_std: torch.Tensor | None = None  # per-channel std of pooled tokens [D]

    @classmethod
    def of(cls, data: torch.Tensor) -> "LossScales":
        pooled = data.mean(1)
        return cls(float((data - data.mean((0, 1))).pow(2).mean()), float((pooled - pooled.mean(0)).pow(2).mean()),
                   pooled.std(0).clamp_min(1e-6))


@dataclass
class LinearProbe:
    """Frozen standardise + linear classifier on mean-pooled tokens: logits = ((x - mean) / scale) @ weight.T + bias."""
    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    logit_var: float = 1.0

    @classmethod
    def fit(cls, tokens: np.ndarray, labels: np.ndarray | None, c: float = 0.5) -> "LinearProbe":
        """Logistic regression on standardised mean-pooled tokens (the digits benchmark's probe recipe)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        if labels is None or len(labels) != len(tokens):
            raise NtcError("probe distillation needs one label per training image")
        pooled = tokens.mean(1)
        scaler = StandardScaler().fit(pooled)
        clf = LogisticRegression(max_iter=3000, C=c).fit(scaler.transform(pooled), labels)
        f = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        probe = cls(f(scaler.mean_), f(scaler.scale_), f(clf.coef_), f(clf.intercept_))
        probe.logit_var = float(probe(torch.from_numpy(pooled)).var())
        return probe

    def __call__(self, pooled: torch.Tensor) -> torch.Tensor:
        return ((pooled - self.mean) / self.scale) @ self.weight.T + self.bias


def token_loss(pred: torch.Tensor, target: torch.Tensor, scales: LossScales, pooled_std_weight: float = 0.0,
               probe: LinearProbe | None = None, probe_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, mean cosine) for reconstructed tokens [B, N, D] (see module docstring)."""
    cos = F.cosine_similarity(pred, target, dim=-1).mean()
    p, t = pred.mean(1), target.mean(1)
    loss = F.mse_loss(pred, target) / scales.token_var + (1.0 - cos) + F.mse_loss(p, t) / scales.pooled_var
    if pooled_std_weight:
        loss = loss + pooled_std_weight * ((p - t) / scales.pooled_std).pow(2).mean()
    if probe is not None and probe_weight:
        loss = loss + probe_weight * F.mse_loss(probe(p), probe(t)) / probe.logit_var
    return loss, cos


def train_compressor(arch: str, config: dict, tokens: np.ndarray, epochs: int = 5, batch: int = 16, lr: float = 2e-3,
                     seed: int = 0, progress: bool = True, init: dict | None = None, labels: np.ndarray | None = None,
                     pooled_std_weight: float = 0.0, probe_weight: float = 0.0) -> TrainResult:
    """Fit a compressor (simulated BC in the loop) on patch tokens [N, h*w, D]; seeded, AdamW + cosine schedule.

    `init`: a state_dict to start from (fine-tuning); `labels` + `probe_weight`: distil a linear probe (see above)."""
    from ..models import build

    if arch not in TRAINABLE:
        raise NtcError(f"train supports {', '.join(TRAINABLE)}; got {arch!r}")
    if epochs < 1 or batch < 1:
        raise NtcError(f"epochs and batch must be >= 1 (got {epochs}, {batch})")
    if tokens.ndim != 3 or len(tokens) == 0:
        raise NtcError(f"training tokens must be [N, h*w, D] with N > 0, got shape {list(tokens.shape)}")
    torch.manual_seed(seed)
    module = build(arch, config)
    if init is not None:
        module.load_state_dict(init)
    module._check_tokens(torch.from_numpy(tokens[:1]))
    data = torch.from_numpy(tokens)
    scales = LossScales.of(data)
    probe = LinearProbe.fit(tokens, labels) if probe_weight else None
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
                out = module.reconstruct(x)
                loss, cos = token_loss(out[0] if isinstance(out, tuple) else out, x, scales, pooled_std_weight,
                                       probe, probe_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
                opt.step()
                sched.step()
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
    return result


def _progress(enabled: bool, total: int, label: str):
    if not enabled:
        return None, None
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True)
    bar.start()
    return bar, bar.add_task(label, total=total)


@torch.no_grad()
def token_cosine(module: torch.nn.Module, tokens: np.ndarray, batch: int = 32) -> float:
    """Mean per-token cosine of the deployable path (real BC encoder + BcDecode) on tokens [N, h*w, D]."""
    sims = []
    for start in range(0, len(tokens), batch):
        x = tokens[start:start + batch]
        y = module.decompress(module.compress(x))
        sims.append(F.cosine_similarity(torch.from_numpy(y), torch.from_numpy(x), dim=-1).mean(-1))
    return float(torch.cat(sims).mean())
