"""Shared base for token models: input patch tokens [B, h, w, D] on any grid, optional linear task head."""

import hashlib
import json

import numpy as np
import torch
import torch.nn as nn

from .grid import as_grid, grid_pair, grid_tokens


def refresh_frozen_weights(module, incompatible_keys) -> None:
    """load_state_dict post-hook: weights a model freezes as buffers in eval mode follow the loaded parameters."""
    module.train(module.training)


def input_profiles(module: nn.Module, batch: tuple, grid: tuple) -> dict[str, list[list[int]]]:
    """min/opt/max shapes of every input of `module` for engine builds, from its own example inputs at each
    (batch, grid): grid entries are a side or (h, w); token inputs [B, h, w, D], BC-block inputs
    [B, planes, by, bx, W], ..."""
    triples = [module.example_inputs(b, g) for b, g in zip(batch, grid)]
    return {name: [list(t[i].shape) for t in triples] for i, name in enumerate(module.input_names)}


class TokenModel(nn.Module):
    """A model over visual tokens. Subclasses implement `core(tokens, h, w) -> [B, N', D_out]`.

    With `num_classes > 0` a linear task head reads the mean output token, so downstream accuracy is measurable
    through every exported artifact (second output `logits`).
    """

    input_dim: int
    output_dim: int
    grid_multiple: int = 1  # the deployable graph's inputs come in grid steps of this (token inputs: any grid)
    dynamic_grid: bool = True
    # Capabilities the toolchain asks about (typed here rather than probed with hasattr):
    is_compressor: bool = False  # True: the compressor contract (`encode` / `decode` payloads) is implemented
    family: str = ""  # compressors: the payload family this model writes
    side_multiple: int = 1  # a family whose grid sides must divide by this (Qwen's 2x2 merger: 2) says so
    side_rule: str | None = None  # ... in these words
    decode_graph_names: tuple[str, ...] = ()  # extra graphs (see extra_graphs) the decode side runs, not the encoder

    def check_token_grid(self, tokens: torch.Tensor, multiple: int | None = None, rule: str | None = None
                         ) -> tuple[int, int]:
        """(h, w) of patch tokens [B, h, w, input_dim] (any grid) or [B, h*w, input_dim] (a square grid), each side a
        multiple of `multiple` (default: the family's own constraint, side_multiple, worded by side_rule); a one-line
        NtcError naming the arch otherwise."""
        from ..util.errors import NtcError

        multiple, rule = (self.side_multiple, self.side_rule) if multiple is None else (multiple, rule)

        if tokens.dim() not in (3, 4) or tokens.shape[-1] != self.input_dim:
            raise NtcError(f"{self.arch} takes tokens [B, h, w, {self.input_dim}], got {list(tokens.shape)}")
        _, h, w = grid_tokens(tokens)
        if tokens.dim() == 3 and (h * w != tokens.shape[1] or h == 0):
            raise NtcError(f"{self.arch}: {tokens.shape[1]} flat tokens are not a square grid; give them as "
                           "[B, h, w, D]")
        if h < 1 or w < 1 or h % multiple or w % multiple:
            raise NtcError(f"{self.arch} needs {rule or f'grid sides divisible by {multiple}'}, got a {h}x{w} grid")
        return h, w

    def _init_head(self, num_classes: int) -> None:
        self.head = nn.Linear(self.output_dim, num_classes) if num_classes > 0 else None

    def forward(self, tokens: torch.Tensor):
        """tokens [B, h, w, D] (or [B, N, D] on a square grid) -> [B, N', D_out] (+ logits)."""
        if not torch.compiler.is_exporting():
            self.check_token_grid(tokens)
        x, h, w = grid_tokens(tokens)
        out = self.core(x, h, w)
        if self.head is None:
            return out
        return out, self.head(out.mean(dim=1))

    input_names = ["tokens"]

    @property
    def output_names(self) -> list[str]:
        return ["tokens_out"] + (["logits"] if self.head is not None else [])

    def example_input(self, batch: int = 1, grid=16) -> torch.Tensor:
        """Random patch tokens [batch, h, w, D] on `grid` (a side or (h, w))."""
        g = torch.Generator().manual_seed(0)
        return torch.randn(batch, *grid_pair(grid), self.input_dim, generator=g)

    def example_inputs(self, batch: int = 2, grid=16) -> tuple:
        """Tracing inputs for ONNX export, in `input_names` order, at `grid` (a side or (h, w))."""
        return (self.example_input(batch, grid),)

    def input_axes(self) -> dict:
        """ONNX dynamic axes of the inputs (compressor decoders override: they take blocks, indices, latents)."""
        return {"tokens": {0: "batch", 1: "grid_h", 2: "grid_w"} if self.dynamic_grid else {0: "batch"}}

    def dynamic_axes(self) -> dict:
        """ONNX dynamic axes for inputs and outputs."""
        axes = self.input_axes()
        for name in self.output_names:
            axes[name] = {0: "batch", 1: "out_tokens"} if name == "tokens_out" else {0: "batch"}
        return axes

    def prepare_inputs(self, patch_tokens) -> dict:
        """Feeds (numpy, keyed by input name) for held-out patch tokens [N, h, w, D] (or [N, h*w, D] on a square
        grid); models whose deployable graph takes something else (e.g. BC blocks) override this."""
        return {"tokens": as_grid(patch_tokens)}

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
