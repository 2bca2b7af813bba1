"""What models from outside our registry (torch.export programs, ONNX files) share: one input of float patch tokens,
flat [B, N, D] (N = h*w, any grid) or on their grid [B, h, w, D] (what our own exports take), whose dims are each
static or dynamic as the user made them, and the interface the toolchain asks for."""

import torch
import torch.nn as nn

from ..util.errors import NtcError
from .grid import as_grid, grid_pair


class ForeignTokenModel(nn.Module):
    """Base of the wrappers; subclasses call `set_input` and set input/output names, `config` and `forward`."""

    is_compressor = False
    family = ""
    grid_multiple = 1

    def set_input(self, shape: list[int | None], source: str, what: str) -> None:
        """Record the token input's dims (None: dynamic); NtcError unless it is [B, N, D] or [B, h, w, D] with a
        static D."""
        if len(shape) not in (3, 4) or shape[-1] is None:
            raise NtcError(f"{source}: {what} is {shape}; expected float patch tokens [B, N, D] or [B, h, w, D] "
                           "with a static D")
        self.input_shape = list(shape)
        self.input_dim = shape[-1]
        self.dynamic_grid = any(d is None for d in shape[1:-1])

    def example_inputs(self, batch: int = 2, grid=16) -> tuple:
        """Tokens at `grid` (a side or (h, w)) in the input's layout; static dims stay as the user made them."""
        b, *grid_dims, d = self.input_shape
        sizes = [h * w for h, w in [grid_pair(grid)]] if len(grid_dims) == 1 else list(grid_pair(grid))
        sizes = [s if g is None else g for s, g in zip(sizes, grid_dims)]
        return (torch.randn(batch if b is None else b, *sizes, d),)

    def prepare_inputs(self, patch_tokens) -> dict:
        """Held-out patch tokens ([N, h, w, D], or flat [N, h*w, D] on a square grid) in the input's layout."""
        if len(self.input_shape) == 4:
            return {self.input_names[0]: as_grid(patch_tokens)}
        flat = patch_tokens.reshape(patch_tokens.shape[0], -1, patch_tokens.shape[-1])
        return {self.input_names[0]: flat}

    def input_profiles(self, batch: tuple, grid: tuple) -> dict[str, list[list[int]]]:
        """min/opt/max shapes for engine builds: the static dims stay as the user made them."""
        return {self.input_names[0]: [list(self.example_inputs(b, g)[0].shape) for b, g in zip(batch, grid)]}
