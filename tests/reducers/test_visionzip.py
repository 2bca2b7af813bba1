"""VisionZip: PyTorch vs the official selection written as loops on square and non-square grids; graph ops and shapes
(batch, grid height and width dynamic); ORT vs PyTorch on real tokens at two grids; a grid below the budget refused.

The real-token fixture is patch tokens only (no CLS attention), so the real-token checks feed a deterministic stand-in
score (each token's L2 norm) through the `score` input; random attention checks the heads path.
"""

import numpy as np
import onnx
import pytest
import reducer_refs as ref
import torch
from ntc_export.backend.onnx.export import export_model
from ntc_export.backend.onnxrt.runner import OrtRunner
from ntc_export.models import build
from ntc_export.models.visionzip import BUDGETS, VisionZip
from ntc_export.util.errors import NtcError
from reducer_graphs import assert_grid_inputs, assert_no_dynamic_ops, assert_static_outputs, rel_l2
from reducer_grids import ODD_GRID


def _run(module: VisionZip, *inputs: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [o.numpy() for o in module(*(torch.from_numpy(i) for i in inputs))]


def _norm_score(tokens: np.ndarray) -> np.ndarray:
    return np.linalg.norm(tokens, axis=-1).astype(np.float32)


@pytest.mark.parametrize("budget,grid", [(b, (16, 16)) for b in sorted(BUDGETS)] + [(64, ODD_GRID), (16, (3, 7)),
                                                                                     (64, (8, 8))])
def test_matches_reference_with_head_attention(budget, grid):
    """Tokens [B, h, w, C] and attention [B, heads, h, w] on the grid (3x7 and 8x8: just enough tokens for the
    budget, 5 and 0 of them merged); the reference reads them flat, row-major."""
    dominant, contextual = BUDGETS[budget]
    n = grid[0] * grid[1]
    rng = np.random.default_rng(budget + n)
    x = rng.standard_normal((2, *grid, 32)).astype(np.float32)
    attention = rng.random((2, 6, *grid)).astype(np.float32)
    module = VisionZip(input_dim=32, dominant=dominant, contextual=contextual)
    out, dom = _run(module, x, attention)
    assert out.shape == (2, budget, 32) and dom.shape == (2, dominant)
    for b in range(2):
        score = attention[b].reshape(6, n).astype(np.float64).sum(0)
        want, want_dom, _ = ref.visionzip(x[b].reshape(n, -1), score, dominant, contextual)
        np.testing.assert_array_equal(dom[b], want_dom)
        np.testing.assert_allclose(out[b], want, rtol=1e-5, atol=1e-5)


def test_keys_decide_the_contextual_merge():
    rng = np.random.default_rng(7)
    x, keys = rng.standard_normal((2, 64, 16)).astype(np.float32), rng.standard_normal((2, 64, 8)).astype(np.float32)
    score = rng.random((2, 64)).astype(np.float32)
    module = VisionZip(input_dim=16, num_tokens=64, dominant=10, contextual=6, heads=0, keys_dim=8)
    out, dom = _run(module, x, score, keys)
    for b in range(2):
        want, want_dom, _ = ref.visionzip(x[b], score[b], 10, 6, keys[b])
        np.testing.assert_array_equal(dom[b], want_dom)
        np.testing.assert_allclose(out[b], want, rtol=1e-5, atol=1e-5)
    without_keys = _run(VisionZip(input_dim=16, num_tokens=64, dominant=10, contextual=6, heads=0), x, score)[0]
    assert not np.allclose(out[:, 10:], without_keys[:, 10:])  # the keys, not the tokens, chose the targets


def test_real_tokens_against_reference(real_tokens):
    score = _norm_score(real_tokens)
    module = VisionZip(dominant=54, contextual=10, heads=0)
    out, dom = _run(module, real_tokens, score)
    for b in range(len(real_tokens)):
        want, want_dom, margin = ref.visionzip(real_tokens[b], score[b], 54, 10)
        assert margin > 1e-6  # every merge clear of fp32 rounding (pinned crops: 5.9e-6 .. 2.4e-4)
        np.testing.assert_array_equal(dom[b], want_dom)
        np.testing.assert_allclose(out[b], want, rtol=1e-5, atol=1e-5)  # measured max |error| 2.1e-6 (|x| <= 16)


@pytest.mark.parametrize("dominant,contextual,heads", [(54, 10, 0), (13, 3, 6)])
def test_export_takes_any_grid_and_ort_matches_on_real_tokens(tmp_path, real_tokens, odd_grid_tokens, dominant,
                                                              contextual, heads):
    module = VisionZip(dominant=dominant, contextual=contextual, heads=heads)
    path = export_model(module, tmp_path, precisions=("fp32",))["fp32"]
    model = onnx.load(path)
    assert_no_dynamic_ops(model)
    name = module.input_names[1]
    assert_grid_inputs(model, {"tokens": ["batch", "grid_h", "grid_w", 384],
                               name: ["batch", *([heads] if heads else []), "grid_h", "grid_w"]})
    assert_static_outputs(model, {"tokens_out": [dominant + contextual, 384], "dominant_indices": [dominant]})
    runner = OrtRunner(path)
    for tokens in (real_tokens.reshape(-1, 16, 16, 384), odd_grid_tokens):
        score = _norm_score(tokens)
        # heads: the stand-in score spread over heads unevenly, so the sum over heads is what ranks tokens
        weights = np.linspace(0.5, 1.5, heads, dtype=np.float32)[None, :, None, None] / heads
        attention = score[:, None] * weights if heads else score
        got = runner.run({"tokens": tokens, name: attention})
        want = dict(zip(module.output_names, _run(module, tokens, attention)))
        np.testing.assert_array_equal(got["dominant_indices"], want["dominant_indices"])
        clear = _clear(tokens, dominant, contextual)  # 16x16: all 8 (>= 5.9e-6); 13x21 at 54 + 10: 3 of 4 (1.2e-7)
        assert clear.sum() >= len(tokens) - 1
        assert rel_l2(got["tokens_out"][clear], want["tokens_out"][clear]) <= 1e-5  # measured 2e-8 .. 5e-8


def _clear(tokens: np.ndarray, dominant: int, contextual: int) -> np.ndarray:
    """Per image: every contextual merge clear of fp32 rounding (the reference's margin > 1e-6)."""
    flat, score = tokens.reshape(len(tokens), -1, tokens.shape[-1]), _norm_score(tokens).reshape(len(tokens), -1)
    return np.array([ref.visionzip(x, s, dominant, contextual)[2] > 1e-6 for x, s in zip(flat, score)])


def test_odd_grid_real_tokens_against_reference(odd_grid_tokens):
    score = _norm_score(odd_grid_tokens)
    module = VisionZip(dominant=54, contextual=10, heads=0)
    out, dom = _run(module, odd_grid_tokens, score)
    clear = _clear(odd_grid_tokens, 54, 10)
    assert clear.sum() >= 3  # pinned crops: 3 of 4 (margins 5.7e-6 .. 1.8e-5; one 1.2e-7)
    for b, x in enumerate(odd_grid_tokens):
        want, want_dom, _ = ref.visionzip(x.reshape(273, -1), score[b].ravel(), 54, 10)
        np.testing.assert_array_equal(dom[b], want_dom)  # row-major positions on the 13x21 grid: no near-tie here
        if clear[b]:
            np.testing.assert_allclose(out[b], want, rtol=1e-5, atol=1e-5)


def test_config_and_bad_budgets():
    module = VisionZip(num_tokens=64, dominant=8, contextual=8, heads=0)
    assert build("visionzip", module.config).input_names == ["tokens", "score"]
    assert module.input_profiles((1, 2, 4), (16, 16, 32))["score"] == [[1, 16, 16], [2, 16, 16], [4, 32, 32]]
    with pytest.raises(NtcError, match="budgets"):
        VisionZip(num_tokens=64, dominant=60, contextual=10)
    with pytest.raises(NtcError, match="attention"):
        module.prepare_inputs(np.zeros((1, 64, 384), np.float32))


def test_feeds_go_on_the_grid_and_a_grid_below_the_budget_is_one_line():
    module = VisionZip(dominant=54, contextual=10, heads=6, keys_dim=8)
    rng = np.random.default_rng(0)
    tokens, attention = rng.random((2, 5, 13, 384), np.float32), rng.random((2, 6, 65), np.float32)
    keys = rng.random((2, 66, 8), np.float32)  # the CLS row first, as token sets store keys
    feeds = module.prepare_inputs(tokens, attention=attention, keys=keys)
    np.testing.assert_array_equal(feeds["attention"], attention.reshape(2, 6, 5, 13))
    np.testing.assert_array_equal(feeds["keys"], keys[:, 1:].reshape(2, 5, 13, 8))
    message = (r"^visionzip needs at least 64 patch tokens \(h\*w >= 64: 54 dominant tokens and a target for each "
               r"of 10 contextual ones\), got a 7x5 grid \(35 tokens\)$")
    with pytest.raises(NtcError, match=message):
        module.prepare_inputs(tokens.reshape(2, 65, 384)[:, :35].reshape(2, 7, 5, 384), attention=attention[..., :35],
                              keys=keys[:, :36])
    with pytest.raises(NtcError, match="attention .* does not fit the tokens' 5x13 grid"):
        module(*(torch.from_numpy(a) for a in (tokens, attention[..., :64], keys[:, 1:])))
