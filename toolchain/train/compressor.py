"""Training loop for token compressors on real visual tokens.

Start: the linear coder (PCA of the model's k x k token cells on the training tokens, clipping ranges as the PCA
reference takes them), so training only ever improves on a linear transform coder.
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


def default_merge(rate: float) -> int:
    """2x2 token cells from 8x: on the photo corpus PCA of cells keeps more than per-token PCA at the same bytes
    (token cosine 0.994 vs 0.985 at 8x, 0.985 vs 0.967 at 16x, BC4 included); at 4x per-token coding is already
    0.9987 and a 1536 x 1536 cell basis would not fit a 5 MB checkpoint."""
    return 1 if rate < 8 else 2


def bc_autoencoder_config(rate: float, input_dim: int = 384, merge: int | None = None, **overrides) -> dict:
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

    if arch not in TRAINABLE:
        raise NtcError(f"train supports {', '.join(TRAINABLE)}; got {arch!r}")
    if epochs < 1 or batch < 1:
        raise NtcError(f"epochs and batch must be >= 1 (got {epochs}, {batch})")
    if tokens.ndim != 3 or len(tokens) == 0:
        raise NtcError(f"training tokens must be [N, h*w, D] with N > 0, got shape {list(tokens.shape)}")
    torch.manual_seed(seed)
    module = build(arch, config)
    module._check_tokens(torch.from_numpy(tokens[:1]))
    if init is not None:
        module.load_state_dict(init)
    else:
        linear_init(module, tokens)
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
                out = module.reconstruct(x)
                loss, cos = token_loss(out[0] if isinstance(out, tuple) else out, x, scales)
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
