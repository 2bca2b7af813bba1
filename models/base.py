"""Shared base for token models: input patch tokens [B, h*w, D] on a square grid, optional linear task head."""

import contextvars
import hashlib
import json
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn

_traced_grid: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("ntc_traced_grid", default=None)


@contextmanager
def traced_grid(h, w):
    """While torch.export traces a model fed [B, h, w, D] tokens (flattened), `square_grid` answers (h, w): N = h*w
    has no square root torch.export can express."""
    token = _traced_grid.set((h, w))
    try:
        yield
    finally:
        _traced_grid.reset(token)


def square_grid(tokens: torch.Tensor) -> tuple[torch.Tensor | int, torch.Tensor | int]:
    """(h, w) of a square token grid from N = h*w; traced as graph ops so ONNX keeps the grid dynamic."""
    n = tokens.shape[1]
    if isinstance(n, int):
        side = int(round(n ** 0.5))
        return side, side
    if (grid := _traced_grid.get()) is not None:  # torch.export: the side is a Dim (backend/onnx/dynamo.py)
        return grid
    side = torch.sqrt(torch.as_tensor(n, dtype=torch.float32)).round().to(torch.int64)
    return side, side


def refresh_frozen_weights(module, incompatible_keys) -> None:
    """load_state_dict post-hook: weights a model freezes as buffers in eval mode follow the loaded parameters."""
    module.train(module.training)


def input_profiles(module: nn.Module, batch: tuple, grid: tuple) -> dict[str, list[list[int]]]:
    """min/opt/max shapes of every input of `module` for engine builds, from its own example inputs at each
    (batch, grid side): token inputs [B, g*g, D], BC-block inputs [B, planes, by, bx, W], ..."""
    triples = [module.example_inputs(b, g) for b, g in zip(batch, grid)]
    return {name: [list(t[i].shape) for t in triples] for i, name in enumerate(module.input_names)}


class TokenModel(nn.Module):
    """A model over visual tokens. Subclasses implement `core(tokens, h, w) -> [B, N', D_out]`.

    With `num_classes > 0` a linear task head reads the mean output token, so downstream accuracy is measurable
    through every exported artifact (second output `logits`).
    """

    input_dim: int
    output_dim: int
    grid_multiple: int = 1  # grids must be a multiple of this (after the model's own padding)
    dynamic_grid: bool = True
    # Capabilities the toolchain asks about (typed here rather than probed with hasattr):
    is_compressor: bool = False  # True: the compressor contract (`encode` / `decode` payloads) is implemented
    family: str = ""  # compressors: the payload family this model writes

    def check_token_grid(self, tokens: torch.Tensor, multiple: int, rule: str | None = None) -> tuple[int, int]:
        """(h, w) of patch tokens [B, h*w, input_dim] on a square grid whose side is a multiple of `multiple`; a
        one-line NtcError naming the arch otherwise (`rule` words the side's requirement)."""
        from ..util.errors import NtcError

        if tokens.dim() != 3 or tokens.shape[-1] != self.input_dim:
            raise NtcError(f"{self.arch} takes tokens [B, h*w, {self.input_dim}], got {list(tokens.shape)}")
        side = int(round(tokens.shape[1] ** 0.5))
        if side == 0 or side * side != tokens.shape[1] or side % multiple:
            raise NtcError(f"{self.arch} needs a square token grid with {rule or f'a side divisible by {multiple}'}, "
                           f"got {tokens.shape[1]} tokens")
        return side, side

    def _init_head(self, num_classes: int) -> None:
        self.head = nn.Linear(self.output_dim, num_classes) if num_classes > 0 else None

    def forward(self, tokens: torch.Tensor):
        h, w = square_grid(tokens)
        out = self.core(tokens, h, w)
        if self.head is None:
            return out
        return out, self.head(out.mean(dim=1))

    input_names = ["tokens"]

    @property
    def output_names(self) -> list[str]:
        return ["tokens_out"] + (["logits"] if self.head is not None else [])

    def example_input(self, batch: int = 1, grid: int = 16) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        return torch.randn(batch, grid * grid, self.input_dim, generator=g)

    def example_inputs(self, batch: int = 2, grid: int = 16) -> tuple:
        """Tracing inputs for ONNX export, in `input_names` order."""
        return (self.example_input(batch, grid),)

    def input_axes(self) -> dict:
        """ONNX dynamic axes of the inputs (compressor decoders override: they take blocks, indices, latents)."""
        return {"tokens": {0: "batch", 1: "tokens"} if self.dynamic_grid else {0: "batch"}}

    def dynamic_axes(self) -> dict:
        """ONNX dynamic axes for inputs and outputs."""
        axes = self.input_axes()
        for name in self.output_names:
            axes[name] = {0: "batch", 1: "out_tokens"} if name == "tokens_out" else {0: "batch"}
        return axes

    def prepare_inputs(self, patch_tokens) -> dict:
        """Feeds (numpy, keyed by input name) for held-out patch tokens [N, h*w, D]; models whose deployable
        graph takes something else (e.g. BC blocks) override this."""
        return {"tokens": patch_tokens}

    def input_profiles(self, batch: tuple, grid: tuple) -> dict[str, list[list[int]]]:
        """min/opt/max shapes of every input for engine builds (see `input_profiles` below)."""
        return input_profiles(self, batch, grid)

    def extra_graphs(self) -> dict[str, nn.Module]:
        """Graphs that ship beside the deployable one (an encoder that runs on the GPU, a hyper-synthesis transform):
        name -> module with the same export interface (input_names, output_names, example_inputs, dynamic_axes,
        prepare_inputs). The main job exports, validates and builds each as `<model>.<name>`; none by default."""
        return {}

    # ---- the compressor contract (compressors only; see `is_compressor`) ----------------------------------------

    def encode(self, patch_tokens) -> list[bytes]:
        """Patch tokens [N, h*w, D] -> one self-describing payload per image (ntc_export.codec.payload); bytes per
        image are the payload's length."""
        raise NotImplementedError(f"{type(self).__name__} is not a compressor")

    def decode(self, payloads) -> np.ndarray:
        """Payloads written by `encode` of this model -> patch tokens float32 [N, h*w, D]."""
        raise NotImplementedError(f"{type(self).__name__} is not a compressor")

    # ---- training hooks (trainable compressors; the loop is ntc_export.train.compressor) --------------------------

    def train_forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """One training step's forward: (reconstructed tokens [B, N, D], the family's own loss term already weighted
        (a 0-d tensor: rate, commitment), stats {name: float} to log). The loop adds the token loss."""
        out = self.reconstruct(tokens)
        return out[0] if isinstance(out, tuple) else out, tokens.new_zeros(()), {}

    def after_step(self, tokens: torch.Tensor) -> None:
        """Called after each optimiser step (EMA codebook updates, dead-code restarts); nothing by default."""

    def fingerprint(self) -> bytes:
        """8 bytes naming this trained model (architecture, config, weights): payloads carry it, so a payload from
        another model is refused instead of decoded into garbage."""
        h = hashlib.sha256(f"{getattr(self, 'arch', type(self).__name__)}|"
                           f"{json.dumps(getattr(self, 'config', {}), sort_keys=True)}".encode())
        for name, tensor in self.state_dict().items():
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.digest()[:8]
