"""Projector archs that exist only in Hugging Face VLMs and have no equivalent among ntc_export.models.projectors.

Input of the archs: patch tokens [B, h, w, D] (row-major grid, CLS removed); output [B, N', D_out].
"""

import torch
import torch.nn as nn

from .base import TokenModel
from .packed_merger import ROWS_PER_GROUP, PackedMerger
from .projectors import _space_to_depth
from .registry import register


@register("postshuffle_merger")
class PostShuffleMerger(TokenModel):
    """Qwen3-VL DeepStack merger (`Qwen3VLVisionPatchMerger(use_postshuffle_norm=True)`): 2×2 merge (4D, each
    window's tokens row-major) -> LayerNorm(4D) -> Linear(4D, 4D) -> GELU -> Linear(4D, D_out).
    Submodule names are transformers' own, so converted state dicts keep their key names. `packed_graph`: as
    PatchMerger's (the packed form ships as extra graph "packed")."""

    grid_multiple = side_multiple = 2
    side_rule = "even grid sides (Qwen3-VL's 2x2 merger)"

    def __init__(self, input_dim=1152, output_dim=4096, num_classes=0, packed_graph=False):
        super().__init__()
        merged = input_dim * 4
        self.config = dict(input_dim=input_dim, output_dim=output_dim, num_classes=num_classes,
                           **({"packed_graph": True} if packed_graph else {}))
        self.input_dim, self.output_dim = input_dim, output_dim
        self.norm = nn.LayerNorm(merged, eps=1e-6)
        self.linear_fc1 = nn.Linear(merged, merged)
        self.act_fn = nn.GELU()
        self.linear_fc2 = nn.Linear(merged, output_dim)
        self._init_head(num_classes)

    def core(self, x, h, w):
        return self._mlp(_space_to_depth(x, h, w, 2))

    def _mlp(self, merged: torch.Tensor) -> torch.Tensor:
        return self.linear_fc2(self.act_fn(self.linear_fc1(self.norm(merged))))

    def packed(self, rows: torch.Tensor) -> torch.Tensor:
        """transformers' merger call: rows [T, D] in Qwen's processor order (see models/packed_merger.py) -> [T/4, D_out]."""
        return self._mlp(rows.reshape(-1, ROWS_PER_GROUP * self.input_dim))

    def extra_graphs(self) -> dict[str, nn.Module]:
        return {"packed": PackedMerger(self)} if self.config.get("packed_graph") else {}
