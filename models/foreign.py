"""What models from outside our registry (torch.export programs, ONNX files) share: one input of float patch tokens
[B, N, D] whose dims are each static or dynamic as the user made them, and the interface the toolchain asks for."""

import torch
import torch.nn as nn

from ..util.errors import NtcError
from .grid import grid_pair


class ForeignTokenModel(nn.Module):
    """Base of the wrappers; subclasses call `set_input` and set input/output names, `config` and `forward`."""

    is_compressor = False
    family = ""
    grid_multiple = 1

    def set_input(self, shape: list[int | None], source: str, what: str) -> None:
        """Record the token input's dims (None: dynamic); NtcError unless it is [B, N, D] with a static D."""
        if len(shape) != 3 or shape[2] is None:
            raise NtcError(f"{source}: {what} is {shape}; expected float patch tokens [B, N, D] with a static D")
        self.input_shape = list(shape)
        self.input_dim = shape[2]
        self.dynamic_grid = shape[1] is None

    def example_inputs(self, batch: int = 2, grid=16) -> tuple:
        """Flat tokens [B, h*w, D] at `grid` (a side or (h, w)); static dims stay as the user made them."""
        b, n, d = self.input_shape
        h, w = grid_pair(grid)
        return (torch.randn(batch if b is None else b, h * w if n is None else n, d),)

    def input_profiles(self, batch: tuple, grid: tuple) -> dict[str, list[list[int]]]:
        """min/opt/max shapes for engine builds: the static dims stay as the user made them."""
        return {self.input_names[0]: [list(self.example_inputs(b, g)[0].shape) for b, g in zip(batch, grid)]}
