"""Shared parts of the token-count reducers (ToMe, VisionZip, the budget policy): patch tokens [B, h, w, D] on any
grid that holds enough tokens to reduce (`min_tokens`, the family's real constraint), a count out fixed by the
budget (VisionZip) or by the grid (ToMe: r tokens merged per step).

Their selections (TopK, ArgMax, one-hot assignments) are sized by the grid's token count n = h*w, a traced size in
the exported graph (batch, h and w are its dynamic axes); there is no NonZero or scatter-reduce in their graphs, which
TensorRT would otherwise need plugins for. The ViT's fields they read (CLS attention, keys) enter the graph on the
grid too ([B, heads, h, w], [B, h, w, Dk]): an input axis of h*w cannot be a torch.export Dim.
"""

import numpy as np
import torch

from ..ops.tracing import exporting
from ..util.errors import NtcError
from .base import TokenModel
from .grid import as_grid, grid_pair


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


def one_hot(index: torch.Tensor, classes, dtype=torch.float32) -> torch.Tensor:
    """index int64 [..., k] -> [..., k, classes] one-hot via Equal against a range (no ScatterElements); `classes`
    may be a traced size. Where over two constants, not a Cast: the float16 pass retypes constants but leaves a
    Cast's `to` at float32, which would feed fp32 into an fp16 MatMul."""
    hit = index[..., None] == torch.arange(classes)
    return torch.where(hit, torch.ones((), dtype=dtype), torch.zeros((), dtype=dtype))


def rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B or 1, n, C], index int64 [B, k] -> x's rows [B, k, C] as a one-hot MatMul: exact (one 1 per row), and
    broadcasting needs no index expanded to the rows' shape, as GatherElements would."""
    return one_hot(index, x.shape[-2], x.dtype) @ x


def ascending_split(picked: torch.Tensor, n) -> tuple[torch.Tensor, torch.Tensor]:
    """picked int64 [B, k] of range(n) (n may be a traced size) -> (the other positions [B, n - k], picked [B, k]),
    each ascending: one TopK over distinct integer keys (no NonZero, no masked_select)."""
    is_picked = one_hot(picked, n).sum(1)  # [B, n] 0/1
    key = torch.arange(n, dtype=torch.float32) + n * is_picked  # the others first; keys < 2n exact in fp32
    order = key.topk(n, dim=-1, largest=False).indices
    rest = n - picked.shape[-1]
    return order.narrow(1, 0, rest), order.narrow(1, rest, picked.shape[-1])  # sizes exact: no clamp Min/Max


def flat_field(x: torch.Tensor, axis: int, rank: int) -> torch.Tensor:
    """A ViT field whose flat form has `rank` axes, the token axis at `axis`: on the grid (h, w at `axis`, one axis
    more) -> flat; flat as is."""
    return x.flatten(axis, axis + 1) if x.dim() == rank + 1 else x


def on_grid(field: np.ndarray, axis: int, grid: tuple[int, int], name: str, arch: str) -> np.ndarray:
    """A token set's flat field [..., h*w (at `axis`), ...] -> on the grid [..., h, w, ...] (the graph's layout)."""
    h, w = grid
    if field.ndim <= axis or field.shape[axis] != h * w:
        raise NtcError(f"{arch}: {name} has {list(field.shape)}, not {h * w} tokens (the tokens' {h}x{w} grid) on "
                       f"axis {axis}")
    return field.reshape(*field.shape[:axis], h, w, *field.shape[axis + 1:])


class FixedCountReducer(TokenModel):
    """Base of the reducers: patch tokens [B, h, w, D] on any grid of at least `min_tokens` tokens (eager callers may
    give [B, N, D] on a square grid); batch, h and w are the exported graph's dynamic axes. `num_tokens` names the
    reference grid (a square): the default example inputs and `out_tokens` are those of that grid. A reducer that
    sets `fixed_grid` takes exactly that grid (batch the only dynamic axis) and says so."""

    # Outputs are exact selections/merges of the inputs (TopK/ArgMax over near-equal scores): the fp16 artifact is
    # fp16 at its interface and fp32 inside, validated against PyTorch on the fp16-rounded inputs it is fed.
    exact_selection = True
    # The token streams an int8 artifact carries as int8 (backend/onnx/int8_io.py); its other float inputs and
    # outputs (the ViT's keys and attention, the sizes) are fp16 as in the fp16 artifact.
    int8_streams = ("tokens", "tokens_out")
    num_tokens: int
    min_tokens: int = 1  # the fewest patch tokens (h*w) it can reduce: the family's real grid constraint
    min_reason: str = ""  # ... why, in a few words
    fixed_grid: tuple[int, int] | None = None
    head = None  # no task head: the outputs are a token subset, not one token per grid cell
    # The ViT's fields beside the tokens: input name -> (token axis of its flat form, rank of its flat form)
    grid_fields = {"attention": (2, 3), "score": (1, 2), "keys": (1, 3)}

    def _check_grid(self, num_tokens: int) -> None:
        side = int(round(num_tokens ** 0.5))
        if side * side != num_tokens:
            raise NtcError(f"num_tokens (the reference grid's count) must be a square grid (e.g. 256 = 16x16), got "
                           f"{num_tokens}")

    @property
    def grid_side(self) -> int:
        return int(round(self.num_tokens ** 0.5))

    @property
    def dynamic_grid(self) -> bool:
        return self.fixed_grid is None

    @property
    def side_rule(self) -> str:
        """The reducer's grid constraint in words."""
        if self.fixed_grid is not None:
            return f"exactly a {self.fixed_grid[0]}x{self.fixed_grid[1]} grid ({self.min_reason})"
        return f"at least {self.min_tokens} patch tokens (h*w >= {self.min_tokens}: {self.min_reason})"

    def check_token_grid(self, tokens: torch.Tensor, multiple: int | None = None, rule: str | None = None
                         ) -> tuple[int, int]:
        """(h, w) of patch tokens on a grid the reducer takes; a one-line NtcError naming its rule otherwise."""
        h, w = super().check_token_grid(tokens, multiple, rule)
        if h * w < self.min_tokens or (self.fixed_grid is not None and (h, w) != tuple(self.fixed_grid)):
            raise NtcError(f"{self.arch} needs {self.side_rule}, got a {h}x{w} grid ({h * w} tokens)")
        return h, w

    def check_inputs(self, tokens: torch.Tensor, fields: dict) -> None:
        """Eager calls: the grid, and every ViT field on the same grid (or flat with h*w tokens) and batch."""
        h, w = self.check_token_grid(tokens)
        for name, x in fields.items():
            axis, rank = self.grid_fields[name]
            tokens_axes = list(x.shape[axis:axis + 2]) if x.dim() == rank + 1 else [x.shape[axis]] * (x.dim() == rank)
            if x.shape[0] != tokens.shape[0] or tokens_axes not in ([h, w], [h * w]):
                raise NtcError(f"{self.arch}: {name} {list(x.shape)} does not fit the tokens' {h}x{w} grid (batch "
                               f"{tokens.shape[0]})")

    def input_axes(self) -> dict:
        """Tokens and the ViT's fields on the grid: batch, grid_h and grid_w dynamic (batch only on a fixed grid)."""
        axes = {}
        for name in self.input_names:
            axis = {"tokens": 1, **{k: v[0] for k, v in self.grid_fields.items()}}.get(name)
            grid = {} if axis is None or not self.dynamic_grid else {axis: "grid_h", axis + 1: "grid_w"}
            axes[name] = {0: "batch", **grid}
        return axes

    def dynamic_axes(self) -> dict:
        """Inputs as `input_axes`; outputs batch-dynamic, token axes named where they follow the grid (ToMe's count
        out, every `source`'s count in)."""
        named = {"tokens_out": {1: "out_tokens"}, "sizes": {1: "out_tokens"},
                 "source": {1: "out_tokens", 2: "grid_tokens"}}
        return {**self.input_axes(), **{name: {0: "batch", **named.get(name, {})} for name in self.output_names}}

    def reference_grid(self, grid=None) -> tuple[int, int]:
        """The grid example inputs are made at: `grid` (a side or (h, w)), the reference grid when None, always the
        fixed grid when there is one."""
        if self.fixed_grid is not None:
            return tuple(self.fixed_grid)
        return grid_pair(self.grid_side if grid is None else grid)

    def example_input(self, batch: int = 1, grid=None) -> torch.Tensor:
        """Random patch tokens [batch, h, w, D] (see `reference_grid`)."""
        return super().example_input(batch, self.reference_grid(grid))

    def input_profiles(self, batch: tuple, grid: tuple) -> dict[str, list[list[int]]]:
        """Engine profiles at each (batch, grid) (min, opt, max; sides or (h, w)): a grid holding fewer than
        `min_tokens` is scaled up, its aspect kept, until it holds them (no grid below them can run), and the larger
        entries at least to it; a fixed grid is itself."""
        raised, least = [], (1, 1)
        for g in grid:
            h, w = grid_pair(g)
            scale = max(1.0, (self.min_tokens / (h * w)) ** 0.5)
            h, w = int(np.ceil(h * scale)), int(np.ceil(w * scale))
            while h * w < self.min_tokens:  # ceil rounding: one more row at most
                h += 1
            least = (max(least[0], h), max(least[1], w))
            raised.append(least)
        return super().input_profiles(batch, raised)

    def grid_feeds(self, patch_tokens, **fields) -> dict:
        """Feeds of held-out patch tokens [N, h, w, D] (or [N, h*w, D] on a square grid) and the token set's flat
        ViT fields (keys with their CLS row), every one on the grid: checked before any work."""
        tokens = as_grid(patch_tokens)
        grid = tuple(tokens.shape[1:3])
        self.check_token_grid(torch.zeros(1, *grid, tokens.shape[-1]))  # the grid alone: no copy of the tokens
        feeds = {"tokens": tokens}
        for name, x in fields.items():
            feeds[name] = on_grid(x[:, 1:] if name == "keys" else x, self.grid_fields[name][0], grid, name,
                                  self.arch)
        return feeds
