"""VisionZip: PyTorch vs the official selection written as loops; graph ops and shapes; ORT vs PyTorch on real tokens.

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
from reducer_graphs import assert_no_dynamic_ops, assert_static_outputs, rel_l2


def _run(module: VisionZip, *inputs: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [o.numpy() for o in module(*(torch.from_numpy(i) for i in inputs))]


def _norm_score(tokens: np.ndarray) -> np.ndarray:
    return np.linalg.norm(tokens, axis=-1).astype(np.float32)


@pytest.mark.parametrize("budget", sorted(BUDGETS))
def test_matches_reference_with_head_attention(budget):
    dominant, contextual = BUDGETS[budget]
    rng = np.random.default_rng(budget)
    x = rng.standard_normal((2, 256, 32)).astype(np.float32)
    attention = rng.random((2, 6, 256)).astype(np.float32)
    module = VisionZip(input_dim=32, dominant=dominant, contextual=contextual)
    out, dom = _run(module, x, attention)
    assert out.shape == (2, budget, 32) and dom.shape == (2, dominant)
    for b in range(2):
        want, want_dom, _ = ref.visionzip(x[b], attention[b].astype(np.float64).sum(0), dominant, contextual)
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
def test_export_is_static_and_ort_matches_on_real_tokens(tmp_path, real_tokens, dominant, contextual, heads):
    module = VisionZip(dominant=dominant, contextual=contextual, heads=heads)
    path = export_model(module, tmp_path, precisions=("fp32",))["fp32"]
    model = onnx.load(path)
    assert_no_dynamic_ops(model)
    assert_static_outputs(model, {"tokens_out": [dominant + contextual, 384], "dominant_indices": [dominant]})
    score = _norm_score(real_tokens)
    # heads: the stand-in score spread over heads unevenly, so the sum over heads is what ranks tokens
    weights = np.linspace(0.5, 1.5, heads, dtype=np.float32)[None, :, None] / heads
    attention = score[:, None, :] * weights if heads else score
    name = module.input_names[1]
    got = OrtRunner(path).run({"tokens": real_tokens, name: attention})
    want = dict(zip(module.output_names, _run(module, real_tokens, attention)))
    np.testing.assert_array_equal(got["dominant_indices"], want["dominant_indices"])
    assert rel_l2(got["tokens_out"], want["tokens_out"]) <= 1e-5  # measured 2e-8, 5e-8: no merge near a tie (>= 5.9e-6)


def test_config_and_bad_budgets():
    module = VisionZip(num_tokens=64, dominant=8, contextual=8, heads=0)
    assert build("visionzip", module.config).input_names == ["tokens", "score"]
    assert module.input_profiles((1, 2, 4), (16, 16, 32))["score"] == [[1, 64], [2, 64], [4, 64]]
    with pytest.raises(NtcError, match="budgets"):
        VisionZip(num_tokens=64, dominant=60, contextual=10)
    with pytest.raises(NtcError, match="attention"):
        module.prepare_inputs(np.zeros((1, 64, 384), np.float32))
