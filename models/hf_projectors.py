"""Projector archs that exist only in Hugging Face VLMs and have no equivalent among ntc_export.models.projectors.

Input: patch tokens [B, h*w, D] (row-major grid, CLS removed); output [B, N', D_out].
"""

import torch.nn as nn

from .base import TokenModel
from .projectors import _space_to_depth
from .registry import register


@register("postshuffle_merger")
class PostShuffleMerger(TokenModel):
    """Qwen3-VL DeepStack merger (`Qwen3VLVisionPatchMerger(use_postshuffle_norm=True)`): 2×2 merge (4D, each
    window's tokens row-major) -> LayerNorm(4D) -> Linear(4D, 4D) -> GELU -> Linear(4D, D_out).
    Submodule names are transformers' own, so converted state dicts keep their key names."""

    grid_multiple = side_multiple = 2
    side_rule = "even grid sides (Qwen3-VL's 2x2 merger)"

    def __init__(self, input_dim=1152, output_dim=4096, num_classes=0):
        super().__init__()
        merged = input_dim * 4
        self.config = dict(input_dim=input_dim, output_dim=output_dim, num_classes=num_classes)
        self.input_dim, self.output_dim = input_dim, output_dim
        self.norm = nn.LayerNorm(merged, eps=1e-6)
        self.linear_fc1 = nn.Linear(merged, merged)
        self.act_fn = nn.GELU()
        self.linear_fc2 = nn.Linear(merged, output_dim)
        self._init_head(num_classes)

    def core(self, x, h, w):
        x = self.norm(_space_to_depth(x, h, w, 2))
        return self.linear_fc2(self.act_fn(self.linear_fc1(x)))
