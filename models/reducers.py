"""Shared parts of the token-count reducers (ToMe, VisionZip): a fixed token count in, a fixed count out.

Their selections (TopK, ArgMax, one-hot assignments) are sized at export time, so every shape but the batch is
static; there is no NonZero or scatter-reduce in their graphs, which TensorRT would otherwise need plugins for.
"""

import torch

from ..ops.tracing import exporting
from ..util.errors import NtcError
from .base import TokenModel


def top_indices(score: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores along the last axis, equal scores in index order: ONNX TopK's tie rule,
    which the exported graph follows and PyTorch's topk does not promise (tokens stored in fp16 tie exactly)."""
    if exporting():
        return score.topk(k, dim=-1).indices
    return score.sort(dim=-1, descending=True, stable=True).indices[..., :k]


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (cosine similarity becomes a MatMul); no epsilon, as the papers' code."""
    return x / x.norm(dim=-1, keepdim=True)


def exact_levels_check(levels: int, dim: int, arch: str) -> None:
    """`levels` for `cosine_scores`: 0 (float cosine) or small enough that integer dot products stay exact."""
    if levels < 0 or dim * levels * levels >= 2**24:
        raise NtcError(f"{arch}: metric_levels must be 0 (float cosine) or 1..{int((2**24 / dim) ** 0.5)} for "
                       f"{dim}-d metric rows (integer dot products exact in fp32), got {levels}")


def cosine_scores(a: torch.Tensor, b: torch.Tensor, levels: int = 0) -> torch.Tensor:
    """a [B, n, C], b [B, m, C] -> cosine similarities [B, n, m]. levels 0: float rows (the papers'). levels > 0: each
    row scaled so its largest |entry| is `levels` and rounded, so dot products and norms are integers below 2^24 that
    every runtime sums exactly in any order, and the rest (Sqrt, Mul, Div) is correctly rounded: ONNX Runtime and
    PyTorch then produce bit-identical scores, and near-ties (real ViT keys have cosines 5e-7 apart) cannot flip
    with the summation order."""
    if not levels:
        return unit_rows(a) @ unit_rows(b).transpose(1, 2)
    qa, qb = (torch.round(x * (levels / x.abs().amax(dim=-1, keepdim=True))) for x in (a, b))
    dot = qa @ qb.transpose(1, 2)
    return dot / torch.sqrt((qa * qa).sum(-1)[:, :, None] * (qb * qb).sum(-1)[:, None, :])


def one_hot(index: torch.Tensor, classes: int, dtype=torch.float32) -> torch.Tensor:
    """index int64 [..., k] -> [..., k, classes] one-hot via Equal against a constant range (no ScatterElements).
    Where over two constants, not a Cast: the float16 pass retypes constants but leaves a Cast's `to` at float32,
    which would feed fp32 into an fp16 MatMul."""
    hit = index[..., None] == torch.arange(classes)
    return torch.where(hit, torch.ones((), dtype=dtype), torch.zeros((), dtype=dtype))


def rows(x: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """x [B or 1, n, C], index int64 [B, k] -> x's rows [B, k, C] as a one-hot MatMul: exact (one 1 per row), and
    broadcasting keeps every shape static, where GatherElements would need an index expanded to a traced shape."""
    return one_hot(index, n, x.dtype) @ x


def ascending_split(picked: torch.Tensor, n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """picked int64 [B, k] of range(n) -> (the other positions [B, n - k], picked [B, k]), each ascending: one TopK
    over distinct integer keys (no NonZero, no masked_select)."""
    is_picked = one_hot(picked, n).sum(1)  # [B, n] 0/1
    key = torch.arange(n, dtype=torch.float32) + n * is_picked  # the others first; exact in fp16 up to n = 1024
    order = key.topk(n, dim=-1, largest=False).indices
    return order[:, : n - k], order[:, n - k:]


class FixedCountReducer(TokenModel):
    """Base of reducers over exactly `num_tokens` patch tokens (a square grid): batch is the only dynamic axis."""

    dynamic_grid = False
    # Outputs are exact selections/merges of the inputs (TopK/ArgMax over near-equal scores): the fp16 artifact is
    # fp16 at its interface and fp32 inside, validated against PyTorch on the fp16-rounded inputs it is fed.
    exact_selection = True
    # The token streams an int8 artifact carries as int8 (backend/onnx/int8_io.py); its other float inputs and
    # outputs (the ViT's keys and attention, the sizes) are fp16 as in the fp16 artifact.
    int8_streams = ("tokens", "tokens_out")
    num_tokens: int
    head = None  # no task head: the outputs are a token subset, not one token per grid cell

    def _check_grid(self, num_tokens: int) -> None:
        side = int(round(num_tokens ** 0.5))
        if side * side != num_tokens:
            raise NtcError(f"num_tokens must be a square grid (e.g. 256 = 16x16), got {num_tokens}")

    @property
    def grid_side(self) -> int:
        return int(round(self.num_tokens ** 0.5))

    def example_input(self, batch: int = 1, grid: int | None = None) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        return torch.randn(batch, self.num_tokens, self.input_dim, generator=g)

    def dynamic_axes(self) -> dict:
        return {name: {0: "batch"} for name in [*self.input_names, *self.output_names]}

    def input_profiles(self, batch: tuple, grid: tuple) -> dict[str, list[list[int]]]:
        """Engine profiles: batch varies, the token count is the model's own whatever grid is asked for."""
        return super().input_profiles(batch, (self.grid_side,) * len(batch))
