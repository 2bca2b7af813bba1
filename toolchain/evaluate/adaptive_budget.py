"""Adaptive token budgets: per image, the smallest reducer budget (ToMe or VisionZip) whose cover partition leaves
at most a share of the image's token variation unexplained, the error threshold set on a training split to reach a
target mean token count, then measured on held-out data beside the fixed budgets.

The criterion is the exported `budget_policy` graph (errors per budget, chosen index) run in ONNX Runtime; each budget
is its own exported reducer graph, and an image's tokens are those of the graph its index names. Budgets are token
counts on the held-out set's grid (any h x w): each below its h*w tokens is a reducer graph, a last one at or above
them means all the grid's tokens.
"""

from pathlib import Path

import numpy as np

from ..models.budget_policy import BudgetPolicy, budget_reducer
from ..util.errors import NtcError
from .token_reduction import reduction_row, run_outputs


class Criterion:
    """The exported criterion graph (`budget_policy`) in ONNX Runtime: one export serves every threshold, which is
    a graph input."""

    def __init__(self, policy: BudgetPolicy, folder: Path):
        from ..backend.onnx.export import export_model
        from ..backend.onnxrt.runner import OrtRunner

        self.policy = policy.eval()
        self.runner = OrtRunner(export_model(self.policy, folder, ("fp32",))["fp32"],
                                providers=["CPUExecutionProvider"])

    def __call__(self, tokens, threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(errors [B, K], budget_index [B]) over a TokenSet, every image at `threshold` (default: the config's)."""
        from ..data.tokens import model_fields

        fields = model_fields(self.policy, tokens, "the policy's token set")
        errors, index = [], []
        for s in range(0, len(tokens), 64):
            feeds = self.policy.prepare_inputs(tokens.grid_tokens[s:s + 64], threshold,
                                               **{k: v[s:s + 64] for k, v in fields.items()})
            res = self.runner.run({n: np.ascontiguousarray(feeds[n], dtype=np.float32)
                                   for n in self.policy.input_names})
            errors.append(res["errors"])
            index.append(res["budget_index"])
        return np.concatenate(errors), np.concatenate(index)


def grid_counts(grid, budgets) -> tuple[int, int]:
    """(the grid's token count n, the square reference count the budget graphs are made for: n on a square grid,
    else the next square); every budget but a last one must be below n (that one means all tokens)."""
    h, w = grid
    n = h * w
    side = int(np.ceil(n ** 0.5))
    if any(b >= n for b in budgets[:-1]):
        raise NtcError(f"budgets {', '.join(map(str, budgets))}: on the {h}x{w} grid ({n} tokens) every budget but the "
                       "last must be below its token count (the last may be all of them)")
    return n, side * side


def fit_threshold(errors: np.ndarray, budgets, target: float) -> float:
    """The smallest error threshold whose policy (first budget with error <= threshold, the last always) spends at
    most `target` tokens per image on average over `errors` [B, K]."""
    budgets = np.asarray(budgets, dtype=np.float64)
    for t in np.unique(errors):  # ascending: mean tokens only fall as the threshold rises
        ok = errors <= t
        ok[:, -1] = True
        if budgets[ok.argmax(1)].mean() <= target:
            return float(t)
    raise NtcError(f"no error threshold reaches {target:g} tokens per image with budgets {list(budgets)}")


def pick(per_budget: list[tuple[np.ndarray, np.ndarray]], index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image's (tokens_out, cover) from the budget its index names, zero-padded to the largest budget (padding
    covers nothing, so it neither counts as a token nor lands on the grid)."""
    n_max = max(out.shape[1] for out, _ in per_budget)
    b, n_pos, dim = len(index), per_budget[0][1].shape[2], per_budget[0][0].shape[2]
    out, cover = np.zeros((b, n_max, dim), np.float32), np.zeros((b, n_max, n_pos), np.float32)
    for k, (o, c) in enumerate(per_budget):
        sel = index == k
        out[sel, :o.shape[1]] = o[sel]
        cover[sel, :o.shape[1]] = np.broadcast_to(c, (len(o), *c.shape[1:]))[sel]
    return out, cover


def same_mean_mix(budgets, chosen: np.ndarray, seed: int = 0) -> np.ndarray:
    """Budget indices of a policy-blind mix of the two fixed budgets around the mean of `chosen`: each image, at
    random, the larger one with the share that gives the same mean tokens per image (to within one image) — what
    fixed budgets alone reach at the adaptive policy's token count."""
    sizes = np.asarray(budgets, dtype=np.float64)
    mean = sizes[chosen].mean()
    hi = min(int(np.searchsorted(sizes, mean)), len(sizes) - 1)
    lo = max(hi - 1, 0)
    share = 0.0 if hi == lo else (mean - sizes[lo]) / (sizes[hi] - sizes[lo])
    index = np.full(len(chosen), lo)
    index[np.random.default_rng(seed).permutation(len(chosen))[:int(round(share * len(chosen)))]] = hi
    return index


def adaptive_rows(suite, budgets, target: float, folder: Path, keys_dim: int = 0, family: str = "tome",
                  log=lambda text: None) -> list[dict]:
    """Fixed-budget rows of `family`, the adaptive policy's row (its threshold fitted on each pair's training set
    `suite.policy_fit`/`suite.task_fit`, to `target` mean tokens per image) and the fixed budgets mixed at random to
    the policy's own mean token count on each held-out set (the fair comparison when the fitted threshold lands off
    the target)."""
    budgets = [int(b) for b in budgets]
    n, reference = grid_counts(suite.data.grid, budgets)
    # VisionZip reads the CLS attention of every head the token set holds (ToMe reads none)
    heads = suite.data.attention.shape[1] if suite.data.attention is not None else 0
    graphs = {b: budget_reducer(family, b, reference, heads, keys_dim) for b in budgets if b < n}
    cache = {}

    def fixed(b, ts):
        if (b, id(ts)) not in cache:
            cache[b, id(ts)] = (run_outputs(graphs[b], ts, folder / f"{family}{b}_{len(cache)}") if b < n else
                                (ts.patch_tokens, np.eye(ts.patch_tokens.shape[1], dtype=np.float32)[None]))
        return cache[b, id(ts)]

    log(f"{family} at fixed budgets {', '.join(map(str, budgets))}")
    rows = [reduction_row(f"{family} {b} (fixed)", f"{family} (fixed budgets)", lambda ts, b=b: fixed(b, ts),
                          suite, False) for b in budgets]
    policy_budgets = [b if b < n else reference for b in budgets]  # a last budget of all tokens: the reference's
    criterion = Criterion(BudgetPolicy(num_tokens=reference, budgets=policy_budgets, heads=heads, keys_dim=keys_dim,
                                       family=family), folder / "criterion")
    def counts(ts) -> list[int]:  # each budget's tokens on the set's grid: all of them at most
        return [min(b, ts.patch_tokens.shape[1]) for b in budgets]

    thresholds, chosen, mixed = {}, {}, {}
    for held, train in ((suite.data, suite.policy_fit), (suite.task_val, suite.task_fit)):
        if held is None:
            continue
        thresholds[id(held)] = fit_threshold(criterion(train)[0], counts(train), target)
        _, chosen[id(held)] = criterion(held, thresholds[id(held)])
        mixed[id(held)] = same_mean_mix(counts(held), chosen[id(held)])

    log(f"adaptive policy (thresholds fitted for {target:g} tokens per image) and the same-mean mix")
    policy_rows = []
    for label, family_label, picks in ((f"adaptive {family} {'/'.join(map(str, budgets))}",
                                        f"{family} adaptive policy", chosen),
                                       (f"{family} fixed budgets mixed to the same mean", f"{family} (fixed budgets)",
                                        mixed)):
        row = reduction_row(label, family_label, lambda ts, picks=picks: pick([fixed(b, ts) for b in budgets],
                                                                              picks[id(ts)]), suite, False)
        row["budget_share"] = {str(b): float(np.mean(picks[id(suite.data)] == k)) for k, b in enumerate(budgets)}
        if suite.task_val is not None:
            row["task_tokens_per_image"] = float(np.mean(np.asarray(counts(suite.task_val))[picks[id(suite.task_val)]]))
        policy_rows.append(row)
    policy_rows[0]["thresholds"] = [thresholds[id(h)] for h in (suite.data, suite.task_val) if h is not None]
    return rows + policy_rows
