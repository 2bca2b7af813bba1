"""`budget_policy`: the criterion graph of adaptive token budgets — per image, the smallest fixed budget whose
reduced tokens, scattered back to the grid, leave at most a share (the threshold) of the image's token variation
unexplained. `family`: the budgets' reducer, VisionZip (reads the CLS attention) or ToMe (its merged tokens are
exactly the means of their covers, so the criterion is its scattered-back error itself).

tokens [B, h, w, D] + threshold [B] (+ attention [B, heads, h, w], keys) -> errors [B, K] and budget_index [B] (int64:
the first budget with error <= the image's threshold). The threshold is a graph input, so one graph serves every
fitted threshold and a server can spend more tokens on some requests; the config's `threshold` is the default feed.
A budget's error: its piecewise-constant fit (every output token's cover filled with the
mean ViT token of that cover, independent of VisionZip's unnormalised contextual sums) against the tokens, in L2,
relative to the tokens' spread around the image's mean token — the share of the image's token variation the
partition cannot hold (1 - R^2, square-rooted); a budget of all `num_tokens` (the last) means all the grid's tokens:
error 0. Relative to the tokens' own norm instead, the ViT's large common token component (which any partition
holds) flattens the differences between images.
Grids: VisionZip's budgets are token counts, so the visionzip policy takes any grid holding its largest reduced
budget; ToMe's budgets are (r, steps) schedules tabled for 256 tokens, so the tome policy (and its budget graphs)
takes the 16x16 grid only.
A server runs this graph, then the chosen budget's own reducer graph (one engine or optimization profile per
budget). The criterion is measured before the language model and is not a task metric.
"""

import numpy as np
import torch

from ..util.errors import NtcError
from .grid import grid_tokens
from .reducers import FixedCountReducer
from .registry import register
from .tome import ToMe
from .visionzip import VisionZip

SPLITS = {16: (13, 3), 36: (30, 6), 64: (54, 10), 144: (122, 22)}  # budget -> VisionZip (dominant, contextual)
TOME_STEPS = {16: (16, 15), 36: (22, 10), 64: (48, 4), 144: (28, 4)}  # budget -> ToMe (r, steps) from 256 tokens


def split_of(budget: int) -> tuple[int, int]:
    """VisionZip's (dominant, contextual) for a budget: the table's, else about 5:1 as VisionZip's 54 + 10."""
    if budget in SPLITS:
        return SPLITS[budget]
    contextual = max(1, round(budget / 6.4))
    return budget - contextual, contextual


def budget_reducer(family: str, budget: int, num_tokens: int, heads: int, keys_dim: int, trace_source=False):
    """The reducer graph of one budget: VisionZip on any grid of at least `budget` tokens; ToMe's tabled schedule on
    the 16x16 grid only."""
    if family == "visionzip":
        return VisionZip(num_tokens=num_tokens, dominant=split_of(budget)[0], contextual=split_of(budget)[1],
                         heads=heads, keys_dim=keys_dim, trace_source=trace_source)
    if family == "tome" and num_tokens == 256 and budget in TOME_STEPS:
        r, steps = TOME_STEPS[budget]
        return ToMe(num_tokens=num_tokens, r=r, steps=steps, keys_dim=keys_dim, trace_source=trace_source,
                    metric_levels=127 if keys_dim else 0, fixed_grid=True)
    raise NtcError(f"budget_policy: no {family} graph for {budget} of {num_tokens} tokens (tome: "
                   f"{', '.join(map(str, TOME_STEPS))} of 256; visionzip: any)")


def cover_fit(tokens: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """tokens [B, N, D], 0/1 source [B, n, N] (a partition) -> [B, N, D]: each position the mean of its cover."""
    means = source @ tokens / source.sum(dim=2)[..., None].clamp(min=1)
    return source.transpose(1, 2) @ means


@register("budget_policy")
class BudgetPolicy(FixedCountReducer):
    """Criterion graph over reducer budgets (ascending; a last budget of `num_tokens` means all the grid's tokens)."""

    def __init__(self, input_dim=384, num_tokens=256, budgets=(16, 36, 64, 144, 256), threshold=0.5, heads=6,
                 keys_dim=0, family="visionzip"):
        super().__init__()
        self._check_grid(num_tokens)
        budgets = [int(b) for b in budgets]
        if not budgets or budgets != sorted(set(budgets)) or budgets[0] < 2 or budgets[-1] > num_tokens:
            raise NtcError(f"budget_policy: budgets must ascend, each in 2..{num_tokens}, got {budgets}")
        self.config = dict(input_dim=input_dim, num_tokens=num_tokens, budgets=budgets, threshold=float(threshold),
                           heads=heads, keys_dim=keys_dim, family=family)
        self.family = family
        self.input_dim = self.output_dim = input_dim
        self.num_tokens, self.budgets, self.threshold = num_tokens, budgets, float(threshold)
        self.heads, self.keys_dim = heads, keys_dim
        self.reducers = torch.nn.ModuleList(budget_reducer(family, b, num_tokens, heads, keys_dim, True)
                                            for b in budgets if b < num_tokens)
        self.fixed_grid = next((r.fixed_grid for r in self.reducers if r.fixed_grid is not None), None)
        self.min_tokens = max([r.min_tokens for r in self.reducers], default=1)
        self.min_reason = (f"its ToMe budgets are (r, steps) schedules tabled for {num_tokens} tokens"
                           if self.fixed_grid is not None else
                           f"its largest reduced budget, {budgets[len(self.reducers) - 1]}" if len(self.reducers)
                           else "every budget keeps all tokens")

    @property
    def input_names(self) -> list[str]:
        return ["tokens", "threshold", *(self.reducers[0].input_names[1:] if len(self.reducers) else [])]

    output_names = ["errors", "budget_index"]

    def example_inputs(self, batch: int = 2, grid=None) -> tuple:
        grid = self.reference_grid(grid)
        tokens, *fields = (self.reducers[0].example_inputs(batch, grid) if len(self.reducers) else
                           (self.example_input(batch, grid),))
        return (tokens, torch.full((batch,), self.threshold), *fields)

    def forward(self, tokens: torch.Tensor, threshold: torch.Tensor, first: torch.Tensor | None = None,
                second: torch.Tensor | None = None):
        """tokens [B, h, w, D] (or [B, N, D] on a square grid), the per-image thresholds [B] and the budget
        reducers' other inputs in order (VisionZip: attention (+ keys); ToMe: keys if any), on the same grid."""
        if not torch.compiler.is_exporting():
            self.check_token_grid(tokens)
        fields = [f for f in (first, second) if f is not None]
        x = grid_tokens(tokens)[0]
        norm = (x - x.mean(dim=1, keepdim=True)).norm(dim=(1, 2))  # the spread around the mean token
        errors = []
        for reducer in self.reducers:
            source = reducer(tokens, *fields)[-1]
            errors.append((cover_fit(x, source) - x).norm(dim=(1, 2)) / norm)
        if len(errors) < len(self.budgets):  # the all-tokens budget reconstructs exactly
            errors.append(norm * 0)
        errors = torch.stack(errors, dim=1)
        ok = (errors <= threshold[:, None]).float()
        ok = torch.cat([ok[:, :-1], torch.ones_like(ok[:, -1:])], dim=1)  # the largest budget always qualifies
        return errors, ok.argmax(dim=1)  # ArgMax returns the first maximum: the smallest qualifying budget

    @property
    def token_fields(self) -> tuple[str, ...]:
        return self.reducers[0].token_fields if len(self.reducers) else ()

    def prepare_inputs(self, patch_tokens, threshold: float | None = None, **fields) -> dict:
        """The reducers' feeds on the grid (the policy's grid checked first) and one threshold per image (default:
        the config's)."""
        tokens = self.grid_feeds(patch_tokens)["tokens"]
        feeds = self.reducers[0].prepare_inputs(tokens, **fields) if len(self.reducers) else {"tokens": tokens}
        value = self.threshold if threshold is None else threshold
        return {**feeds, "threshold": np.full(len(tokens), value, np.float32)}
