"""`tome`: Token Merging's bipartite soft matching (Bolya et al., ICLR 2023) at a fixed r per step.

One step over N tokens: A = even positions, B = odd; cosine similarity of their metric rows (the tokens, or keys given
as a second input); each A token's best B match is an edge; the r best edges merge their A token into its B match by
size-weighted mean (ToMe's `merge_wavg`); output [unmerged A, then all of B], each in grid order. (ToMe's code leaves
unmerged A in edge-score order; the order carries no meaning, and grid order keeps it independent of near-equal
scores, which real tokens have: cosines of neighbouring DINOv2 tokens differ by 1e-7.)
`steps` steps give N - steps*r tokens and their sizes (tokens merged into each; for proportional attention).
The sort is a full-length TopK, row selection and the merge are one-hot MatMuls in place of gather/scatter_reduce:
every shape but the batch is static. Token counts are Python ints here, so tracing records constants, not Shape ops.
"""

import torch

from ..util.errors import NtcError
from .reducers import FixedCountReducer, ascending_split, cosine_scores, exact_levels_check, one_hot, rows, top_indices
from .registry import register


def bipartite_match(metric: torch.Tensor, n: int, r: int, levels: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """metric [B, n, C] -> (unmerged A indices [B, na - r], merged A indices [B, r], their B matches [B, r]);
    A = even positions (na = ceil(n/2)), B = odd; `levels`: cosine_scores' integer metric (0: float)."""
    scores = cosine_scores(metric[:, ::2], metric[:, 1::2], levels)
    best, match = scores.max(dim=-1)
    src = top_indices(best, r)  # the r best edges (TopK of static k: ToMe's argsort, cut at r)
    unmerged, _ = ascending_split(src, (n + 1) // 2, r)
    return unmerged, src, match.gather(1, src)


def merge_sum(x: torch.Tensor, n: int, unm: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """x [B or 1, n, C] -> [B, n - r, C]: unmerged A rows, then B rows plus the A rows merged into each (summed)."""
    a, b = x[:, ::2], x[:, 1::2]
    assign = one_hot(dst, n // 2, x.dtype).transpose(1, 2)  # [B, nb, r]: merged A row j goes to B row dst[j]
    return torch.cat([rows(a, unm, (n + 1) // 2), b + assign @ rows(a, src, (n + 1) // 2)], dim=1)


@register("tome")
class ToMe(FixedCountReducer):
    """Fixed-shape ToMe: tokens [B, N, D] (+ keys [B, N, keys_dim]) -> tokens_out [B, N', D], sizes [B, N', 1]
    (+ source [B, N', N]: which input tokens each output holds, with `trace_source`)."""

    def __init__(self, input_dim=384, num_tokens=256, r=32, steps=4, keys_dim=0, trace_source=False,
                 metric_levels=0):
        super().__init__()
        self._check_grid(num_tokens)
        exact_levels_check(metric_levels, keys_dim or input_dim, "tome")
        n = num_tokens
        for step in range(steps):
            if not 0 < r <= n // 2:
                raise NtcError(f"tome: r={r} at step {step + 1} must be in 1..{n // 2} (the B set of {n} tokens)")
            n -= r
        self.config = dict(input_dim=input_dim, num_tokens=num_tokens, r=r, steps=steps, keys_dim=keys_dim,
                           trace_source=trace_source, **({"metric_levels": metric_levels} if metric_levels else {}))
        self.metric_levels = metric_levels
        self.input_dim = self.output_dim = input_dim
        self.num_tokens, self.r, self.steps, self.keys_dim = num_tokens, r, steps, keys_dim
        self.trace_source = trace_source
        self.out_tokens = n

    @property
    def input_names(self) -> list[str]:
        return ["tokens"] + (["keys"] if self.keys_dim else [])

    @property
    def output_names(self) -> list[str]:
        return ["tokens_out", "sizes"] + (["source"] if self.trace_source else [])

    def example_inputs(self, batch: int = 2, grid: int | None = None) -> tuple:
        x = self.example_input(batch)
        if not self.keys_dim:
            return (x,)
        return x, torch.randn(batch, self.num_tokens, self.keys_dim, generator=torch.Generator().manual_seed(1))

    def forward(self, tokens: torch.Tensor, keys: torch.Tensor | None = None):
        n = self.num_tokens
        x, size = tokens, torch.ones(1, n, 1, dtype=tokens.dtype)  # broadcast over the batch: no traced shapes
        source = torch.eye(n, dtype=tokens.dtype)[None] if self.trace_source else None
        for _ in range(self.steps):
            idx = bipartite_match(x if keys is None else keys, n, self.r, self.metric_levels)
            new_size = merge_sum(size, n, *idx)
            if keys is not None:  # merged keys stand for the merged tokens' keys in the next step
                keys = merge_sum(keys * size, n, *idx) / new_size
            x, size = merge_sum(x * size, n, *idx) / new_size, new_size
            source = None if source is None else merge_sum(source, n, *idx)
            n -= self.r
        return (x, size, source) if self.trace_source else (x, size)

    @property
    def token_fields(self) -> tuple[str, ...]:
        """Token-set fields `prepare_inputs` reads beside the patch tokens (the main job loads them)."""
        return ("keys",) if self.keys_dim else ()

    def prepare_inputs(self, patch_tokens, keys=None) -> dict:
        """Feeds from patch tokens [N, h*w, D] (+ a token set's keys [N, 1 + h*w, keys_dim], CLS row first)."""
        if not self.keys_dim:
            return {"tokens": patch_tokens}
        if keys is None:
            raise NtcError("this tome model takes the ViT's keys beside the tokens: token files from "
                           "`ntc-export tokens --attention`")
        return {"tokens": patch_tokens, "keys": keys[:, 1:]}
