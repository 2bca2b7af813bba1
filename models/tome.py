"""`tome`: Token Merging's bipartite soft matching (Bolya et al., ICLR 2023) at a fixed r per step.

One step over n tokens: A = even positions, B = odd; cosine similarity of their metric rows (the tokens, or keys given
as a second input); each A token's best B match is an edge; the r best edges merge their A token into its B match by
size-weighted mean (ToMe's `merge_wavg`); output [unmerged A, then all of B], each in grid order. (ToMe's code leaves
unmerged A in edge-score order; the order carries no meaning, and grid order keeps it independent of near-equal
scores, which real tokens have: cosines of neighbouring DINOv2 tokens differ by 1e-7.)
`steps` steps give h*w - steps*r tokens and their sizes (tokens merged into each; for proportional attention), on any
grid of at least (steps + 1) * r tokens (the last step's B set must hold r tokens). The sort is a full-length TopK,
row selection and the merge are one-hot MatMuls in place of gather/scatter_reduce; their sizes follow the grid's
token count, a traced size in the exported graph.
"""

import torch

from ..util.errors import NtcError
from .grid import grid_tokens
from .reducers import (FixedCountReducer, ascending_split, cosine_scores, exact_levels_check, flat_field, one_hot,
                       rows, top_indices)
from .registry import register


def halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, n, C] -> (A = even positions [B, na = ceil(n/2), C], B = odd positions [B, n - na, C]). Gathers sized
    na and n - na, not strided slices (ceil(n/2) and floor(n/2)): the traced sizes then add up to n - r after a step,
    where the slices' would grow into an expression in n doubled every step."""
    n = x.shape[1]
    na = (n + 1) // 2
    return x.index_select(1, torch.arange(na) * 2), x.index_select(1, torch.arange(n - na) * 2 + 1)


def bipartite_match(metric: torch.Tensor, r: int, levels: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """metric [B, n, C] -> (unmerged A indices [B, na - r], merged A indices [B, r], their B matches [B, r]);
    A = even positions (na = ceil(n/2)), B = odd; `levels`: cosine_scores' integer metric (0: float)."""
    a, b = halves(metric)
    scores = cosine_scores(a, b, levels)
    best, match = scores.max(dim=-1)
    src = top_indices(best, r)  # the r best edges (TopK of static k: ToMe's argsort, cut at r)
    unmerged, _ = ascending_split(src, a.shape[1])
    return unmerged, src, match.gather(1, src)


def merge_sum(x: torch.Tensor, unm: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """x [B, n, C] -> [B, n - r, C]: unmerged A rows, then B rows plus the A rows merged into each (summed)."""
    a, b = halves(x)
    assign = one_hot(dst, b.shape[1], x.dtype).transpose(1, 2)  # [B, nb, r]: merged A row j goes to B row dst[j]
    return torch.cat([rows(a, unm), b + assign @ rows(a, src)], dim=1)


@register("tome")
class ToMe(FixedCountReducer):
    """ToMe on any grid: tokens [B, h, w, D] (+ keys [B, h, w, keys_dim]) -> tokens_out [B, N', D], sizes [B, N', 1]
    (+ source [B, N', h*w]: which input tokens each output holds, with `trace_source`); N' = h*w - steps*r.
    `num_tokens`: the reference grid (`out_tokens` is N' there); `fixed_grid`: that grid only."""

    def __init__(self, input_dim=384, num_tokens=256, r=32, steps=4, keys_dim=0, trace_source=False,
                 metric_levels=0, fixed_grid=False):
        super().__init__()
        self._check_grid(num_tokens)
        exact_levels_check(metric_levels, keys_dim or input_dim, "tome")
        n = num_tokens
        for step in range(steps):
            if not 0 < r <= n // 2:
                raise NtcError(f"tome: r={r} at step {step + 1} must be in 1..{n // 2} (the B set of {n} tokens)")
            n -= r
        self.config = dict(input_dim=input_dim, num_tokens=num_tokens, r=r, steps=steps, keys_dim=keys_dim,
                           trace_source=trace_source, **({"metric_levels": metric_levels} if metric_levels else {}),
                           **({"fixed_grid": True} if fixed_grid else {}))
        self.metric_levels = metric_levels
        self.input_dim = self.output_dim = input_dim
        self.num_tokens, self.r, self.steps, self.keys_dim = num_tokens, r, steps, keys_dim
        self.trace_source = trace_source
        self.out_tokens = n
        if fixed_grid:  # a schedule tabled for one grid (the budget policy's): that grid only
            self.fixed_grid, self.min_tokens = (self.grid_side,) * 2, num_tokens
            self.min_reason = f"r={r} in {steps} steps is this grid's schedule to {n} tokens"
        else:
            self.min_tokens = (steps + 1) * r
            self.min_reason = f"{steps} steps merging r={r}, the last one's B set must hold {r}"

    @property
    def input_names(self) -> list[str]:
        return ["tokens"] + (["keys"] if self.keys_dim else [])

    @property
    def output_names(self) -> list[str]:
        return ["tokens_out", "sizes"] + (["source"] if self.trace_source else [])

    def example_inputs(self, batch: int = 2, grid=None) -> tuple:
        x = self.example_input(batch, grid)
        if not self.keys_dim:
            return (x,)
        return x, torch.randn(*x.shape[:3], self.keys_dim, generator=torch.Generator().manual_seed(1))

    def forward(self, tokens: torch.Tensor, keys: torch.Tensor | None = None):
        """tokens [B, h, w, D] (or [B, N, D] on a square grid) and keys on the same grid (or flat)."""
        if not torch.compiler.is_exporting():
            self.check_inputs(tokens, {} if keys is None else {"keys": keys})
        x, h, w = grid_tokens(tokens)
        keys = None if keys is None else flat_field(keys, 1, 3)
        n = h * w
        # sizes and sources per image, not broadcast from one: a batch-1 MatMul operand makes torch.export guard on
        # batch != 1
        size = torch.ones_like(x[..., :1])
        source = torch.eye(n, dtype=x.dtype).expand(x.shape[0], n, n) if self.trace_source else None
        for _ in range(self.steps):
            idx = bipartite_match(x if keys is None else keys, self.r, self.metric_levels)
            new_size = merge_sum(size, *idx)
            if keys is not None:  # merged keys stand for the merged tokens' keys in the next step
                keys = merge_sum(keys * size, *idx) / new_size
            x, size = merge_sum(x * size, *idx) / new_size, new_size
            source = None if source is None else merge_sum(source, *idx)
        return (x, size, source) if self.trace_source else (x, size)

    @property
    def token_fields(self) -> tuple[str, ...]:
        """Token-set fields `prepare_inputs` reads beside the patch tokens (the main job loads them)."""
        return ("keys",) if self.keys_dim else ()

    def prepare_inputs(self, patch_tokens, keys=None) -> dict:
        """Feeds from patch tokens [N, h, w, D] (or [N, h*w, D] on a square grid) (+ a token set's keys
        [N, 1 + h*w, keys_dim], CLS row first), on the grid."""
        if self.keys_dim and keys is None:
            raise NtcError("this tome model takes the ViT's keys beside the tokens: token files from "
                           "`ntc-export tokens --attention`")
        return self.grid_feeds(patch_tokens, **({"keys": keys} if self.keys_dim else {}))
