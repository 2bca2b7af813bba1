"""The packed export form of Qwen-VL's 2x2 mergers (models/projectors.PatchMerger, models/hf_projectors.
PostShuffleMerger): the rows of a request's images packed together, as their vision towers feed the merger."""

import functools

import numpy as np
import torch
import torch.nn as nn

from ..util.errors import NtcError
from .base import TokenModel, input_profiles
from .grid import as_grid, grid_pair, merge_order

MERGE = 2  # Qwen-VL's spatial_merge_size (the only one converted: hf/families.py)
ROWS_PER_GROUP = MERGE * MERGE
_MAX_GROUPS = 1 << 20  # merged rows a packed graph admits: ~200 images at Qwen's default 1280-token budget


def pack(grid_tokens) -> np.ndarray:
    """Patch tokens of one grid [N, h, w, D] (row-major; even sides) -> the rows a Qwen-VL processor emits for them,
    all N images packed: [N*h*w, D], image after image, each in merge-window order (models.grid.merge_order)."""
    n, h, w, d = grid_tokens.shape
    return np.ascontiguousarray(grid_tokens.reshape(n, h * w, d)[:, merge_order(h, w, MERGE)].reshape(-1, d))


class PackedMerger(nn.Module):
    """The packed export form of a Qwen-VL 2x2 merger (PatchMerger: Qwen2-VL, Qwen2.5-VL, Qwen3-VL's main merger;
    PostShuffleMerger: Qwen3-VL's DeepStack mergers): input `tokens` [T, D], the rows of every image of a request
    packed together as the vision tower hands them to its merger (T = Σ t·h·w over the request's `grid_thw`, t = 1
    for an image; dynamic, a multiple of 4, no padding between images) -> `tokens_out` [T/4, D_out], transformers'
    `merger(hidden_states)` = `mlp(ln_q(x).view(-1, 4*D))` exactly.

    Row order (not our row-major [B, h, w, D] grid): the Qwen processor's. Image after image; within an image of
    h x w patches, its 2x2 merge windows row-major, each window's 4 patches row-major (top-left, top-right,
    bottom-left, bottom-right): grid token (r, c) is the image's row ((r//2)·(w/2) + c//2)·4 + (r%2)·2 + c%2
    (models.grid.merge_order; `prepare_inputs` packs grid tokens so). Output row g merges rows 4g..4g+3, so any
    reordering of whole groups of 4 carries over to the output: Qwen2.5-VL's tower feeds its merger the groups in
    attention-window order and un-permutes the merged rows (`reverse_indices`); feeding this graph the processor
    order gives the un-permuted rows directly. A task head of the merger is not part of this graph."""

    input_names = ["tokens"]
    output_names = ["tokens_out"]
    grid_multiple = side_multiple = MERGE  # example_inputs/prepare_inputs take image grids of even sides

    def __init__(self, model: TokenModel):
        super().__init__()
        self.model = model
        self.arch = f"{model.arch}.packed"
        self.input_dim, self.output_dim = model.input_dim, model.output_dim
        self.side_rule = model.side_rule

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_exporting():
            self.check_rows(tokens)
        return self.model.packed(tokens)

    def check_rows(self, tokens) -> None:
        """A one-line NtcError unless `tokens` is [T, input_dim] with T a positive multiple of 4."""
        shape = list(tokens.shape)
        if len(shape) != 2 or shape[1] != self.input_dim or shape[0] < 1 or shape[0] % ROWS_PER_GROUP:
            raise NtcError(f"{self.arch} takes packed rows [T, {self.input_dim}] (T = Σ h·w over the images, a "
                           f"multiple of {ROWS_PER_GROUP}: whole 2x2 merge windows), got {shape}")

    def check_token_grid(self, tokens: torch.Tensor, multiple: int = MERGE, rule: str | None = None):
        """(h, w) of grid tokens [B, h, w, D] this graph's packing takes (even sides); the merger's one-line error
        otherwise."""
        return self.model.check_token_grid(tokens, MERGE, rule or self.side_rule)

    def example_inputs(self, batch: int = 2, grid=16) -> tuple:
        """`batch` images of grid (h, w) (a side or a pair, even sides) packed: random rows [batch*h*w, D]."""
        h, w = grid_pair(grid)
        self.check_token_grid(torch.empty(1, h, w, self.input_dim))
        g = torch.Generator().manual_seed(0)
        return (torch.randn(batch * h * w, self.input_dim, generator=g),)

    def dynamic_axes(self) -> dict:
        return {"tokens": {0: "rows"}, "tokens_out": {0: "merged_rows"}}

    def input_profiles(self, batch: tuple, grid: tuple) -> dict[str, list[list[int]]]:
        """min/opt/max rows for engine builds: `batch` images of each `grid` packed."""
        return input_profiles(self, batch, grid)

    def prepare_inputs(self, patch_tokens) -> dict:
        """Held-out patch tokens [N, h, w, D] (or [N, h*w, D] on a square grid) -> {"tokens": their packed rows},
        N images as one request; odd sides are the merger's one-line error."""
        grid = as_grid(np.asarray(patch_tokens, dtype=np.float32))
        self.check_token_grid(torch.from_numpy(grid[:1]))
        return {"tokens": pack(grid)}

    @functools.cached_property
    def program(self) -> torch.export.ExportedProgram:
        """This graph through torch.export with T = 4·groups dynamic, which backend/onnx/export.to_onnx_fp32 turns
        into ONNX as is: the grid exporter's Dims are a grid's height and width, and packed rows grow with neither
        alone. Traced once per instance (build a new one after changing the weights)."""
        groups = torch.export.Dim("merged_rows", min=1, max=_MAX_GROUPS)
        try:
            with torch.no_grad():
                return torch.export.export(self.eval(), self.example_inputs(1, (24, 26)),
                                           dynamic_shapes=({0: ROWS_PER_GROUP * groups},), strict=False)
        except Exception as e:  # a one-line error, never an AttributeError that hasattr() would swallow
            raise NtcError(f"torch.export of {self.arch} failed: {(str(e).strip().splitlines() or [''])[0][:300]}") \
                from None
