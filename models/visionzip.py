"""`visionzip`: VisionZip's token selection (Yang et al., CVPR 2025) at fixed budgets, on any grid.

Dominant tokens: the `dominant` patch tokens with the highest CLS attention summed over heads (input `attention`
[B, heads, h, w]; or a ready score [B, h, w] with heads=0), kept in grid order. Contextual tokens: the remaining
m = h*w - dominant tokens in grid order; every step-th of them (step = m // contextual) is a target, every other one is
assigned to its most cosine-similar target (metric: keys [B, h, w, keys_dim] when given, else the tokens), and each
target becomes target + mean of its assigned tokens (the official code's sum; a target with none stays itself).
Output [B, dominant + contextual, D] and the dominant positions [B, dominant] (int64, ascending, row-major on the
grid); with `trace_source`, also source [B, dominant + contextual, h*w]: 0/1 rows marking the input positions each
output token stands for (a dominant token its own position, a contextual token its target and the tokens assigned
to it). A grid needs at least dominant + contextual tokens (m >= contextual: one target each).
The official code drops the CLS row in with the dominant tokens; our inputs are patch tokens only (no CLS).
TopK for the selection and for the grid-order split (no NonZero / masked_select), one-hot MatMuls for per-image row
selection and the merge (no scatter), Gather for the targets' positions, which every image shares.
"""

import torch

from ..util.errors import NtcError
from .grid import grid_tokens
from .reducers import FixedCountReducer, ascending_split, flat_field, one_hot, rows, top_indices, unit_rows
from .registry import register

BUDGETS = {64: (54, 10), 128: (108, 20), 192: (162, 30), 32: (27, 5), 16: (13, 3)}  # out tokens -> (dominant, ctx)


def split_dominant(score: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """score [B, n] -> (dominant positions [B, k], remaining positions [B, n - k]), each ascending."""
    remaining, dominant = ascending_split(top_indices(score, k), score.shape[-1])
    return dominant, remaining


def contextual_targets(m, contextual: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (among m >= contextual remaining tokens; m may be a traced size) of the uniform-stride targets
    [contextual] and of the tokens merged into them [m - contextual], ascending."""
    targets = torch.arange(contextual) * (m // contextual)  # the official range(0, m, max(1, m // c))[:c], m >= c
    return targets, ascending_split(targets[None], m)[0][0]


def contextual_assignment(metric: torch.Tensor, contextual: int) -> torch.Tensor:
    """metric [B, m, C] -> one-hot [B, m - contextual, contextual]: each non-target's most similar target."""
    targets, others = contextual_targets(metric.shape[1], contextual)
    unit = unit_rows(metric)
    similarity = unit.index_select(1, others) @ unit.index_select(1, targets).transpose(1, 2)
    return one_hot(similarity.argmax(dim=-1), contextual, metric.dtype)


def contextual_source(positions: torch.Tensor, assign: torch.Tensor, n, contextual: int) -> torch.Tensor:
    """Remaining positions [B, m], assignment [B, m - c, c] -> 0/1 cover [B, c, n] of the contextual tokens."""
    targets, others = contextual_targets(positions.shape[1], contextual)
    place = one_hot(positions, n, assign.dtype)  # [B, m, n]
    return place.index_select(1, targets) + assign.transpose(1, 2) @ place.index_select(1, others)


def merge_contextual(hidden: torch.Tensor, assign: torch.Tensor, contextual: int) -> torch.Tensor:
    """hidden [B, m, D], assignment [B, m - c, c] (contextual_assignment) -> contextual tokens [B, contextual, D]."""
    targets, others = contextual_targets(hidden.shape[1], contextual)
    assign = assign.to(hidden.dtype)
    counts = assign.sum(dim=1).clamp(min=1)[..., None]
    return hidden.index_select(1, targets) + assign.transpose(1, 2) @ hidden.index_select(1, others) / counts


@register("visionzip")
class VisionZip(FixedCountReducer):
    """tokens [B, h, w, D] + attention [B, heads, h, w] (or score [B, h, w]) (+ keys [B, h, w, keys_dim]) ->
    tokens_out [B, dominant + contextual, D], dominant_indices [B, dominant] (+ source [B, dominant + contextual,
    h*w] with `trace_source`), on any grid of at least dominant + contextual tokens. `num_tokens`: the reference
    grid."""

    def __init__(self, input_dim=384, num_tokens=256, dominant=54, contextual=10, heads=6, keys_dim=0,
                 trace_source=False):
        super().__init__()
        self._check_grid(num_tokens)
        if dominant < 1 or contextual < 1 or dominant + contextual > num_tokens:
            raise NtcError(f"visionzip: budgets dominant={dominant} + contextual={contextual} must be >= 1 each and "
                           f"at most num_tokens={num_tokens}")
        self.config = dict(input_dim=input_dim, num_tokens=num_tokens, dominant=dominant, contextual=contextual,
                           heads=heads, keys_dim=keys_dim, **({"trace_source": True} if trace_source else {}))
        self.input_dim = self.output_dim = input_dim
        self.num_tokens, self.dominant, self.contextual = num_tokens, dominant, contextual
        self.heads, self.keys_dim, self.trace_source = heads, keys_dim, trace_source
        self.out_tokens = self.min_tokens = dominant + contextual
        self.min_reason = f"{dominant} dominant tokens and a target for each of {contextual} contextual ones"

    @property
    def input_names(self) -> list[str]:
        return ["tokens", "attention" if self.heads else "score"] + (["keys"] if self.keys_dim else [])

    @property
    def output_names(self) -> list[str]:
        return ["tokens_out", "dominant_indices"] + (["source"] if self.trace_source else [])

    def example_inputs(self, batch: int = 2, grid=None) -> tuple:
        x = self.example_input(batch, grid)
        g = torch.Generator().manual_seed(1)
        grid = x.shape[1:3]
        shape = (batch, self.heads, *grid) if self.heads else (batch, *grid)
        attention = torch.rand(*shape, generator=g).flatten(-2).softmax(-1).reshape(shape)
        keys = (torch.randn(batch, *grid, self.keys_dim, generator=g),) if self.keys_dim else ()
        return (x, attention, *keys)

    def forward(self, tokens: torch.Tensor, attention: torch.Tensor, keys: torch.Tensor | None = None):
        """tokens [B, h, w, D] (or [B, N, D] on a square grid), attention/score and keys on the same grid (or
        flat)."""
        if not torch.compiler.is_exporting():
            self.check_inputs(tokens, {self.input_names[1]: attention, **({} if keys is None else {"keys": keys})})
        x, h, w = grid_tokens(tokens)
        k = self.dominant
        score = flat_field(attention, 2, 3).sum(dim=1) if self.heads else flat_field(attention, 1, 2)
        dominant, remaining = split_dominant(score, k)
        metric = x if keys is None else flat_field(keys, 1, 3)
        assign = contextual_assignment(rows(metric, remaining), self.contextual)
        context = merge_contextual(rows(x, remaining), assign, self.contextual)
        out = torch.cat([rows(x, dominant), context], dim=1)
        if not self.trace_source:
            return out, dominant
        n = h * w
        source = torch.cat([one_hot(dominant, n, x.dtype), contextual_source(remaining, assign, n, self.contextual)],
                           dim=1)
        return out, dominant, source

    @property
    def token_fields(self) -> tuple[str, ...]:
        """Token-set fields `prepare_inputs` reads beside the patch tokens (the main job loads them)."""
        return ("attention",) + (("keys",) if self.keys_dim else ())

    def prepare_inputs(self, patch_tokens, attention=None, keys=None) -> dict:
        """Feeds on the grid from patch tokens [N, h, w, D] (or [N, h*w, D] on a square grid), a token set's CLS
        attention [N, heads, h*w] (+ its keys [N, 1 + h*w, keys_dim], CLS row first)."""
        if not self.heads or attention is None or (self.keys_dim and keys is None):
            raise NtcError("visionzip takes the ViT's CLS attention [N, heads, h*w]" + (" and keys" if self.keys_dim
                           else "") + " beside the tokens: token files from `ntc-export tokens --attention`")
        return self.grid_feeds(patch_tokens, attention=attention, **({"keys": keys} if self.keys_dim else {}))
