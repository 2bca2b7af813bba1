"""The VLM projector family, each faithful in structure to its published module (dims are config).

Input: patch tokens [B, h, w, D] on any grid (row-major, CLS removed); output [B, N', D_out].
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import TokenModel
from .grid import regroup
from .packed_merger import PackedMerger
from .registry import register


def _space_to_depth(x: torch.Tensor, h, w, k: int) -> torch.Tensor:
    """[B, h*w, C] -> [B, (h/k)*(w/k), k*k*C], each output token the k×k neighbourhood in (row, col, C) order."""
    b, _, c = x.shape
    x = x.reshape(b, h // k, k, w // k, k, c).permute(0, 1, 3, 2, 4, 5)
    return regroup(x, b, -1, k * k * c)


def _pad_grid(x: torch.Tensor, h, w, k: int):
    """Zero-pad the grid up to a multiple of k (OmniVLM-style merges on grids that do not divide)."""
    b, _, c = x.shape
    g = x.reshape(b, h, w, c)
    ph = (h + k - 1) // k * k - h  # floor division, not `%`: torch.export solves its constraints, not Mod's
    pw = (w + k - 1) // k * k - w
    g = F.pad(g, (0, 0, 0, pw, 0, ph))
    return g.reshape(b, -1, c), h + ph, w + pw


class RMSNorm(nn.Module):
    """RMSNorm (Qwen2RMSNorm, nn.RMSNorm) written out: the ONNX exporter has no aten::rms_norm at opset 18, and
    Pow/ReduceMean/Sqrt stay fp32 in our fp16 graphs. State dict: `weight`, as nn.RMSNorm's."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


@register("mlp2x_gelu")
class Mlp2xGelu(TokenModel):
    """LLaVA-1.5 `mlp2x_gelu`: Linear(D, D_llm) -> GELU -> Linear(D_llm, D_llm), token count unchanged."""

    def __init__(self, input_dim=384, output_dim=512, num_classes=0):
        super().__init__()
        self.config = dict(input_dim=input_dim, output_dim=output_dim, num_classes=num_classes)
        self.input_dim, self.output_dim = input_dim, output_dim
        self.mlp = nn.Sequential(nn.Linear(input_dim, output_dim), nn.GELU(), nn.Linear(output_dim, output_dim))
        self._init_head(num_classes)

    def core(self, x, h, w):
        return self.mlp(x)


@register("patch_merger")
class PatchMerger(TokenModel):
    """Qwen2-VL PatchMerger: LayerNorm(D) -> 2×2 merge (4D) -> Linear(4D, hidden) -> GELU -> Linear(hidden, D_out).
    Qwen uses hidden = 4D; `mlp_hidden` lets the zoo stay small. Qwen2.5-VL swaps LayerNorm for RMSNorm (`norm`).
    `packed_graph` (set on converted Qwen checkpoints): the packed form, what Qwen's vision tower feeds its merger
    (`packed`), ships beside the grid graph as extra graph "packed" (models/packed_merger.PackedMerger)."""

    grid_multiple = side_multiple = 2
    side_rule = "even grid sides (Qwen's 2x2 merger; Qwen's smart_resize makes them so)"

    def __init__(self, input_dim=384, output_dim=512, mlp_hidden=None, norm="layernorm", num_classes=0,
                 packed_graph=False):
        super().__init__()
        merged = input_dim * 4
        mlp_hidden = mlp_hidden or merged
        self.config = dict(input_dim=input_dim, output_dim=output_dim, mlp_hidden=mlp_hidden, norm=norm,
                           num_classes=num_classes, **({"packed_graph": True} if packed_graph else {}))
        self.input_dim, self.output_dim = input_dim, output_dim
        self.ln_q = nn.LayerNorm(input_dim, eps=1e-6) if norm == "layernorm" else RMSNorm(input_dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(merged, mlp_hidden), nn.GELU(), nn.Linear(mlp_hidden, output_dim))
        self._init_head(num_classes)

    def core(self, x, h, w):
        return self.mlp(_space_to_depth(self.ln_q(x), h, w, 2))

    def packed(self, rows: torch.Tensor) -> torch.Tensor:
        """transformers' merger call: rows [T, D] in Qwen's processor order (every 4 consecutive rows one 2x2 merge
        window; see models/packed_merger.PackedMerger) -> [T/4, D_out]."""
        return self.mlp(self.ln_q(rows).reshape(-1, 4 * self.input_dim))

    def extra_graphs(self) -> dict[str, nn.Module]:
        if not self.config.get("packed_graph"):
            return {}
        return {"packed": PackedMerger(self)}


@register("pixel_shuffle")
class PixelShuffle(TokenModel):
    """InternVL mlp1: pixel shuffle (scale 0.5: 2×2 space-to-depth) -> LayerNorm(4D) -> Linear -> GELU -> Linear."""

    grid_multiple = side_multiple = 2
    side_rule = "even grid sides (InternVL's 2x2 pixel shuffle)"

    def __init__(self, input_dim=384, output_dim=512, num_classes=0):
        super().__init__()
        self.config = dict(input_dim=input_dim, output_dim=output_dim, num_classes=num_classes)
        self.input_dim, self.output_dim = input_dim, output_dim
        merged = input_dim * 4
        self.mlp1 = nn.Sequential(nn.LayerNorm(merged), nn.Linear(merged, output_dim), nn.GELU(),
                                  nn.Linear(output_dim, output_dim))
        self._init_head(num_classes)

    def core(self, x, h, w):
        # InternVL's pixel shuffle (ps_version v2, transformers' InternVLModel.pixel_shuffle) is this 2×2 order exactly
        # (tests/hf checks converted InternVL checkpoints against it).
        return self.mlp1(_space_to_depth(x, h, w, 2))


@register("merge3x3")
class Merge3x3(TokenModel):
    """OmniVLM-style 9× token reduction (27×27=729 -> 9×9=81): 3×3 neighbourhoods concatenated -> MLP.
    Grids not divisible by 3 are zero-padded."""

    def __init__(self, input_dim=384, output_dim=512, mlp_hidden=256, num_classes=0):
        super().__init__()
        self.config = dict(input_dim=input_dim, output_dim=output_dim, mlp_hidden=mlp_hidden,
                           num_classes=num_classes)
        self.input_dim, self.output_dim = input_dim, output_dim
        self.mlp = nn.Sequential(nn.Linear(9 * input_dim, mlp_hidden), nn.GELU(), nn.Linear(mlp_hidden, output_dim))
        self._init_head(num_classes)

    def core(self, x, h, w):
        x, h, w = _pad_grid(x, h, w, 3)
        return self.mlp(_space_to_depth(x, h, w, 3))


@register("conv16x")
class Conv16x(TokenModel):
    """DeepSeek-OCR DeepEncoder compressor: Conv3×3/s2 -> Conv3×3/s2 (no activation between, 16× fewer tokens)
    -> Linear projector."""

    def __init__(self, input_dim=384, output_dim=512, conv_dims=(128, 256), num_classes=0):
        super().__init__()
        conv_dims = tuple(conv_dims)
        self.config = dict(input_dim=input_dim, output_dim=output_dim, conv_dims=list(conv_dims),
                           num_classes=num_classes)
        self.input_dim, self.output_dim = input_dim, output_dim
        self.net_2 = nn.Conv2d(input_dim, conv_dims[0], 3, stride=2, padding=1, bias=False)
        self.net_3 = nn.Conv2d(conv_dims[0], conv_dims[1], 3, stride=2, padding=1, bias=False)
        self.projector = nn.Linear(conv_dims[1], output_dim)
        self._init_head(num_classes)

    def core(self, x, h, w):
        b, _, c = x.shape
        g = regroup(x.transpose(1, 2), b, c, h, w)
        g = self.net_3(self.net_2(g))
        return self.projector(g.flatten(2).transpose(1, 2))
