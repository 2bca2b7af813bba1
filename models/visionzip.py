"""`visionzip`: VisionZip's token selection (Yang et al., CVPR 2025) at fixed budgets.

Dominant tokens: the `dominant` patch tokens with the highest CLS attention summed over heads (input `attention`
[B, heads, N]; or a ready score [B, N] with heads=0), kept in grid order. Contextual tokens: the remaining N - k tokens
in grid order; every step-th of them (step = max(1, (N-k) // contextual)) is a target, every other one is assigned to
its most cosine-similar target (metric: keys [B, N, keys_dim] when given, else the tokens), and each target becomes
target + mean of its assigned tokens (the official code's sum; a target with none stays itself).
Output [B, dominant + contextual, D] and the dominant positions [B, dominant] (int64, ascending); with
`trace_source`, also source [B, dominant + contextual, N]: 0/1 rows marking the input positions each output token
stands for (a dominant token its own position, a contextual token its target and the tokens assigned to it).
The official code drops the CLS row in with the dominant tokens; our inputs are patch tokens only (no CLS).
Static shapes: TopK for the selection and for the grid-order split (no NonZero / masked_select), one-hot MatMuls for
row selection and the merge (no scatter).
"""

import torch

from ..util.errors import NtcError
from .reducers import FixedCountReducer, ascending_split, one_hot, rows, top_indices, unit_rows
from .registry import register

BUDGETS = {64: (54, 10), 128: (108, 20), 192: (162, 30), 32: (27, 5), 16: (13, 3)}  # out tokens -> (dominant, ctx)


def split_dominant(score: torch.Tensor, n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """score [B, n] -> (dominant positions [B, k], remaining positions [B, n - k]), each ascending."""
    remaining, dominant = ascending_split(top_indices(score, k), n, k)
    return dominant, remaining


def contextual_targets(m: int, contextual: int) -> tuple[list[int], list[int]]:
    """Positions (among m remaining tokens) of the uniform-stride targets and of the tokens merged into them."""
    step = max(1, m // contextual)
    targets = list(range(0, m, step))[:contextual]
    chosen = set(targets)
    return targets, [i for i in range(m) if i not in chosen]


def contextual_assignment(metric: torch.Tensor, m: int, contextual: int) -> torch.Tensor:
    """metric [B, m, C] -> one-hot [B, m - contextual, contextual]: each non-target's most similar target."""
    targets, others = contextual_targets(m, contextual)
    unit = unit_rows(metric)
    similarity = unit[:, torch.tensor(others)] @ unit[:, torch.tensor(targets)].transpose(1, 2)
    return one_hot(similarity.argmax(dim=-1), contextual, metric.dtype)


def contextual_source(positions: torch.Tensor, assign: torch.Tensor, n: int, m: int, contextual: int
                      ) -> torch.Tensor:
    """Remaining positions [B, m], assignment [B, m - c, c] -> 0/1 cover [B, c, n] of the contextual tokens."""
    targets, others = contextual_targets(m, contextual)
    place = one_hot(positions, n, assign.dtype)  # [B, m, n]
    return place[:, torch.tensor(targets)] + assign.transpose(1, 2) @ place[:, torch.tensor(others)]


def merge_contextual(hidden: torch.Tensor, assign: torch.Tensor, m: int, contextual: int) -> torch.Tensor:
    """hidden [B, m, D], assignment [B, m - c, c] (contextual_assignment) -> contextual tokens [B, contextual, D]."""
    targets, others = contextual_targets(m, contextual)
    t_idx, o_idx = torch.tensor(targets), torch.tensor(others)
    assign = assign.to(hidden.dtype)
    counts = assign.sum(dim=1).clamp(min=1)[..., None]
    return hidden[:, t_idx] + assign.transpose(1, 2) @ hidden[:, o_idx] / counts


@register("visionzip")
class VisionZip(FixedCountReducer):
    """tokens [B, N, D] + attention [B, heads, N] (or score [B, N]) (+ keys [B, N, keys_dim]) ->
    tokens_out [B, dominant + contextual, D], dominant_indices [B, dominant] (+ source [B, dominant + contextual, N]
    with `trace_source`)."""

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
        self.out_tokens = dominant + contextual

    @property
    def input_names(self) -> list[str]:
        return ["tokens", "attention" if self.heads else "score"] + (["keys"] if self.keys_dim else [])

    @property
    def output_names(self) -> list[str]:
        return ["tokens_out", "dominant_indices"] + (["source"] if self.trace_source else [])

    def example_inputs(self, batch: int = 2, grid: int | None = None) -> tuple:
        g = torch.Generator().manual_seed(1)
        shape = (batch, self.heads, self.num_tokens) if self.heads else (batch, self.num_tokens)
        attention = torch.rand(*shape, generator=g).softmax(-1)
        keys = (torch.randn(batch, self.num_tokens, self.keys_dim, generator=g),) if self.keys_dim else ()
        return (self.example_input(batch), attention, *keys)

    def forward(self, tokens: torch.Tensor, attention: torch.Tensor, keys: torch.Tensor | None = None):
        n, k = self.num_tokens, self.dominant
        score = attention.sum(dim=1) if self.heads else attention
        dominant, remaining = split_dominant(score, n, k)
        metric = tokens if keys is None else keys
        assign = contextual_assignment(rows(metric, remaining, n), n - k, self.contextual)
        context = merge_contextual(rows(tokens, remaining, n), assign, n - k, self.contextual)
        out = torch.cat([rows(tokens, dominant, n), context], dim=1)
        if not self.trace_source:
            return out, dominant
        source = torch.cat([one_hot(dominant, n, tokens.dtype),
                            contextual_source(remaining, assign, n, n - k, self.contextual)], dim=1)
        return out, dominant, source

    @property
    def token_fields(self) -> tuple[str, ...]:
        """Token-set fields `prepare_inputs` reads beside the patch tokens (the main job loads them)."""
        return ("attention",) + (("keys",) if self.keys_dim else ())

    def prepare_inputs(self, patch_tokens, attention=None, keys=None) -> dict:
        """Feeds from patch tokens [N, h*w, D], a token set's CLS attention [N, heads, h*w] (+ its keys
        [N, 1 + h*w, keys_dim], CLS row first)."""
        if not self.heads or attention is None or (self.keys_dim and keys is None):
            raise NtcError("visionzip takes the ViT's CLS attention [N, heads, h*w]" + (" and keys" if self.keys_dim
                           else "") + " beside the tokens: token files from `ntc-export tokens --attention`")
        return {"tokens": patch_tokens, "attention": attention, **({"keys": keys[:, 1:]} if self.keys_dim else {})}
