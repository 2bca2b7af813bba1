"""ToMe: PyTorch vs the paper's matching written as loops; the exported graph's ops and shapes; ORT vs PyTorch."""

import numpy as np
import onnx
import pytest
import reducer_refs as ref
import torch
from ntc_export.backend.onnx.export import export_model
from ntc_export.backend.onnxrt.runner import OrtRunner
from ntc_export.models import build
from ntc_export.models.tome import ToMe
from ntc_export.util.errors import NtcError
from reducer_graphs import assert_no_dynamic_ops, assert_static_outputs, rel_l2

CLEAR = 1e-6  # a decision whose score gap is below this is a near-tie: fp32 rounding may pick either side


def _sources(source: np.ndarray) -> list[set[int]]:
    """source [N', N] 0/1 -> the set of input tokens each output token holds."""
    return [set(np.flatnonzero(row).tolist()) for row in source]


def _run(module: ToMe, *inputs: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [o.numpy() for o in module(*(torch.from_numpy(i) for i in inputs))]


@pytest.fixture(scope="module")
def references(real_tokens) -> list[tuple]:
    """ref.tome (r=32, 4 steps: ToMe's defaults) of each real image, made once: the loops take a second an image."""
    return [ref.tome(x, 32, 4) for x in real_tokens]


@pytest.mark.parametrize("num_tokens,r,steps,keys_dim", [(256, 32, 4, 0), (64, 16, 2, 0), (256, 20, 3, 48),
                                                         (36, 18, 1, 0)])
def test_matches_reference_on_random_tokens(num_tokens, r, steps, keys_dim):
    rng = np.random.default_rng(num_tokens + r)
    x = rng.standard_normal((2, num_tokens, 64)).astype(np.float32)
    keys = rng.standard_normal((2, num_tokens, keys_dim)).astype(np.float32) if keys_dim else None
    module = ToMe(input_dim=64, num_tokens=num_tokens, r=r, steps=steps, keys_dim=keys_dim, trace_source=True)
    out, sizes, source = _run(module, x, *([keys] if keys_dim else []))
    assert out.shape == (2, num_tokens - steps * r, 64) and sizes.shape == (2, num_tokens - steps * r, 1)
    for b in range(2):
        want, want_sizes, want_sources, _ = ref.tome(x[b], r, steps, None if keys is None else keys[b])
        assert _sources(source[b]) == want_sources  # the selection, in output order, exactly
        np.testing.assert_array_equal(sizes[b, :, 0], want_sizes)
        np.testing.assert_allclose(out[b], want, rtol=1e-5, atol=1e-5)


def test_sizes_count_every_input_once_and_weight_the_mean(real_tokens):
    module = ToMe(trace_source=True)
    out, sizes, source = _run(module, real_tokens)
    np.testing.assert_array_equal(source.sum(axis=1), 1.0)  # each input token lands in exactly one output
    np.testing.assert_array_equal(source.sum(axis=2, keepdims=True), sizes)
    mean_of_sources = source @ real_tokens / sizes  # a merged token is the plain mean of the tokens it holds
    np.testing.assert_allclose(out, mean_of_sources, rtol=1e-4, atol=1e-4)
    assert sizes.max(axis=(1, 2)).min() >= 8  # real tokens merge repeatedly: largest merge per image 13..27 measured


def test_export_is_static_and_ort_matches_on_real_tokens(tmp_path, real_tokens, references):
    """ONNX Runtime's MatMul rounds differently per CPU (AVX2, AVX-512, AMX): exact agreement on the clear images."""
    module = ToMe(trace_source=True)
    path = export_model(module, tmp_path, precisions=("fp32",))["fp32"]
    model = onnx.load(path)
    assert_no_dynamic_ops(model)
    assert {"TopK", "MatMul"} <= {n.op_type for n in model.graph.node}
    assert_static_outputs(model, {"tokens_out": [128, 384], "sizes": [128, 1], "source": [128, 256]})
    got = OrtRunner(path).run({"tokens": real_tokens})
    want = dict(zip(module.output_names, _run(module, real_tokens)))
    clear = [b for b, (*_, margin) in enumerate(references) if margin > CLEAR]
    assert len(clear) >= 6  # 7 of the 8 pinned crops are clear (margins 1.1e-6 .. 1.5e-5; one 1.4e-7)
    for b in clear:
        np.testing.assert_array_equal(got["source"][b], want["source"][b])  # identical selection, identical order
        np.testing.assert_array_equal(got["sizes"][b], want["sizes"][b])
        assert rel_l2(got["tokens_out"][b], want["tokens_out"][b]) <= 1e-5


def test_reference_picks_the_same_merges_on_real_tokens(real_tokens, references):
    """Real tokens have near-equal cosines: where a decision's gap is below fp32's reach (1e-6) either pick is ToMe,
    so exact agreement is asserted on images whose every decision is clear of that, and most must be."""
    module = ToMe(trace_source=True)
    _, sizes, source = _run(module, real_tokens)
    clear = 0
    for b, (_, want_sizes, want_sources, margin) in enumerate(references):
        if margin > CLEAR:
            clear += 1
            assert _sources(source[b]) == want_sources
            np.testing.assert_array_equal(sizes[b, :, 0], want_sizes)
    assert clear >= 6  # 7 of 8 measured


def test_config_round_trips_and_bad_r_is_refused():
    module = ToMe(num_tokens=64, r=8, steps=3)
    assert build("tome", module.config).out_tokens == 64 - 24
    assert module.input_profiles((1, 1, 8), (16, 16, 32))["tokens"] == [[1, 64, 384], [1, 64, 384], [8, 64, 384]]
    with pytest.raises(NtcError, match="r=24 at step 2"):
        ToMe(num_tokens=64, r=24, steps=2)
    with pytest.raises(NtcError, match="square grid"):
        ToMe(num_tokens=60)
