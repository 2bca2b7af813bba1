"""ToMe: PyTorch vs the paper's matching written as loops on square and non-square grids; the exported graph's ops and
shapes (batch, grid height and width dynamic; h*w - steps*r tokens out); ORT vs PyTorch on real tokens at two grids."""

import numpy as np
import onnx
import pytest
import reducer_refs as ref
import torch
from ntc_export.backend.onnx.export import export_model
from ntc_export.backend.onnxrt.runner import OrtRunner
from ntc_export.models import build, load
from ntc_export.models.tome import ToMe
from ntc_export.util.errors import NtcError
from ntc_export.util.paths import ZOO_DIR
from reducer_graphs import assert_grid_inputs, assert_no_dynamic_ops, output_dims, rel_l2
from reducer_grids import ODD_GRID

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


@pytest.mark.parametrize("grid,r,steps,keys_dim", [((16, 16), 32, 4, 0), ((8, 8), 16, 2, 0), ((16, 16), 20, 3, 48),
                                                    ((6, 6), 18, 1, 0), (ODD_GRID, 24, 4, 0), ((5, 9), 15, 2, 8)])
def test_matches_reference_on_random_tokens(grid, r, steps, keys_dim):
    """Tokens (and keys) on the grid [B, h, w, C]; the reference reads them flat, row-major."""
    n = grid[0] * grid[1]
    rng = np.random.default_rng(n + r)
    x = rng.standard_normal((2, *grid, 64)).astype(np.float32)
    keys = rng.standard_normal((2, *grid, keys_dim)).astype(np.float32) if keys_dim else None
    module = ToMe(input_dim=64, r=r, steps=steps, keys_dim=keys_dim, trace_source=True)  # any grid of >= (steps+1)r
    out, sizes, source = _run(module, x, *([keys] if keys_dim else []))
    assert out.shape == (2, n - steps * r, 64) and sizes.shape == (2, n - steps * r, 1) and source.shape[2] == n
    for b in range(2):
        flat_keys = None if keys is None else keys[b].reshape(n, -1)
        want, want_sizes, want_sources, _ = ref.tome(x[b].reshape(n, -1), r, steps, flat_keys)
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


@pytest.fixture(scope="module")
def odd_references(odd_grid_tokens) -> list[tuple]:
    """ref.tome (r=32, 4 steps) of each real image on the non-square grid, flat row-major."""
    return [ref.tome(x.reshape(-1, x.shape[-1]), 32, 4) for x in odd_grid_tokens]


def test_export_takes_any_grid_and_ort_matches_on_real_tokens(tmp_path, real_tokens, references, odd_grid_tokens,
                                                              odd_references):
    """One graph for every grid (h*w - 128 tokens out). ONNX Runtime's MatMul rounds differently per CPU (AVX2,
    AVX-512, AMX): exact agreement on the clear images."""
    module = ToMe(trace_source=True)
    path = export_model(module, tmp_path, precisions=("fp32",))["fp32"]
    model = onnx.load(path)
    assert_no_dynamic_ops(model)
    assert {"TopK", "MatMul"} <= {n.op_type for n in model.graph.node}
    assert_grid_inputs(model, {"tokens": ["batch", "grid_h", "grid_w", 384]})
    assert output_dims(model) == {"tokens_out": ["batch", "out_tokens", 384], "sizes": ["batch", "out_tokens", 1],
                                  "source": ["batch", "out_tokens", "grid_tokens"]}
    runner = OrtRunner(path)
    # 16x16: 7 of the 8 pinned crops are clear (margins 1.1e-6 .. 1.5e-5; one 1.4e-7); 13x21: 4 of 4
    for tokens, refs, least in ((real_tokens.reshape(-1, 16, 16, 384), references, 6),
                                (odd_grid_tokens, odd_references, 4)):
        got = runner.run({"tokens": tokens})
        want = dict(zip(module.output_names, _run(module, tokens)))
        assert got["tokens_out"].shape[1] == tokens.shape[1] * tokens.shape[2] - 128
        clear = [b for b, (*_, margin) in enumerate(refs) if margin > CLEAR]
        assert len(clear) >= least
        for b in clear:
            np.testing.assert_array_equal(got["source"][b], want["source"][b])  # identical selection and order
            np.testing.assert_array_equal(got["sizes"][b], want["sizes"][b])
            assert _sources(want["source"][b]) == refs[b][2]  # and the paper's
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
    assert module.input_profiles((1, 1, 8), (16, 16, 32))["tokens"] == [[1, 16, 16, 384], [1, 16, 16, 384],
                                                                        [8, 32, 32, 384]]
    # 32 tokens at least ((3 + 1) * 8): a profile asked to start at 4x4 starts at 6x6, the smallest square holding them
    assert module.input_profiles((1, 1, 8), (4, 16, 32))["tokens"][0] == [1, 6, 6, 384]
    with pytest.raises(NtcError, match="r=24 at step 2"):
        ToMe(num_tokens=64, r=24, steps=2)
    with pytest.raises(NtcError, match="square grid"):
        ToMe(num_tokens=60)


def test_a_grid_too_small_is_one_line():
    module = load(ZOO_DIR / "tome_64.pt")  # r=48, 4 steps: the last step's B set needs 48 of 240 tokens
    assert module.min_tokens == 240 and module.check_token_grid(torch.zeros(1, 15, 16, 384)) == (15, 16)
    for grid in ((7, 5), (1, 1), (15, 15)):
        with pytest.raises(NtcError, match=rf"^tome needs at least 240 patch tokens .*got a {grid[0]}x{grid[1]} grid"):
            module.prepare_inputs(np.zeros((1, *grid, 384), np.float32), keys=np.zeros((1, 1 + grid[0] * grid[1],
                                                                                            384), np.float32))
    with pytest.raises(NtcError, match="keys .* does not fit the tokens' 15x16 grid"):
        module(torch.zeros(1, 15, 16, 384), torch.zeros(1, 16, 15, 384))
