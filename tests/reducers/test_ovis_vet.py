"""Ovis VET: PyTorch vs a loop reference (2x2 merge, head, LayerNorm, softmax, table) on square, odd and non-square
grids; fp16 graph keeps Softmax in fp32; one graph for every grid; ORT fp32/fp16 vs PyTorch on real tokens at two
grids."""

import numpy as np
import onnx
import pytest
import reducer_refs as ref
import torch
from ntc_export.backend.onnx.export import export_model
from ntc_export.backend.onnxrt.runner import OrtRunner
from ntc_export.models import build
from ntc_export.models.ovis_vet import OvisVET
from ntc_export.util.errors import NtcError
from reducer_graphs import assert_grid_inputs, assert_no_dynamic_ops, output_dims, rel_l2, row_cosines, tensor_types

FLOAT = onnx.TensorProto.FLOAT
TIE = 1e-3  # a logit gap below this is a near-tie for fp32 (its logit error here: 1.3e-5 at logits up to 35)


def _module(vocab: int = 512, hard: bool = False, gain: float = 1.0, **kw) -> OvisVET:
    """A VET with seeded weights; `gain` scales the head's LayerNorm so the softmax is peaked, as a trained one's."""
    torch.manual_seed(vocab + int(gain))
    module = OvisVET(vocab_size=vocab, hard=hard, **kw).eval()
    with torch.no_grad():
        module.tokenizer_head[1].weight.mul_(gain).add_(0.1 * torch.randn(vocab))
        module.tokenizer_head[1].bias.normal_(0, 0.1)
    return module


def _outputs(module: OvisVET, x: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = module(torch.from_numpy(x))
    return dict(zip(module.output_names, [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]))


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("grid", [(16, 16), (7, 7), (7, 12), (1, 5)])  # odd sides zero-padded to even as Ovis pads
def test_matches_reference(hard, grid):
    h, w = grid
    x = np.random.default_rng(h * w).standard_normal((2, h, w, 48)).astype(np.float32)
    module = _module(vocab=64, hard=hard, gain=4.0, input_dim=48, output_dim=32)
    got = _outputs(module, x if h != w else x.reshape(2, h * w, 48))  # a square grid may come flat
    cells = ((h + 1) // 2) * ((w + 1) // 2)
    assert got["tokens_out"].shape == (2, cells, 32)
    for b in range(2):
        want, ids, _ = ref.ovis_vet_of(module, x[b], hard)
        np.testing.assert_allclose(got["tokens_out"][b], want, rtol=1e-5, atol=1e-5)
        if hard:
            np.testing.assert_array_equal(got["visual_ids"][b], ids)


def test_soft_export_fp32_and_fp16_on_real_tokens(tmp_path, real_tokens, odd_grid_tokens):
    module = _module(gain=8.0)
    paths = export_model(module, tmp_path)
    fp32, fp16 = onnx.load(paths["fp32"]), onnx.load(paths["fp16"])
    for model in (fp32, fp16):
        assert_no_dynamic_ops(model)
        assert_grid_inputs(model, {"tokens": ["batch", "grid_h", "grid_w", 384]})
        assert output_dims(model)["tokens_out"] == ["batch", "out_tokens", 512]  # the grid stays dynamic here
    types = tensor_types(fp16)
    (softmax,) = [n for n in fp16.graph.node if n.op_type == "Softmax"]
    (norm,) = [n for n in fp16.graph.node if n.op_type == "LayerNormalization"]
    assert types[softmax.input[0]] == types[softmax.output[0]] == types[norm.output[0]] == FLOAT
    assert fp16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    for tokens in (real_tokens.reshape(-1, 16, 16, 384), odd_grid_tokens):  # 64 cells; 13x21 padded: 7 x 11 cells
        want = _outputs(module, tokens)["tokens_out"]
        got32 = OrtRunner(paths["fp32"]).run({"tokens": tokens})["tokens_out"]
        got16 = OrtRunner(paths["fp16"]).run({"tokens": tokens})["tokens_out"].astype(np.float32)
        assert got32.shape[1] == -(-tokens.shape[1] // 2) * -(-tokens.shape[2] // 2)
        assert rel_l2(got32, want) <= 1e-5
        assert row_cosines(got16, want).min() >= 0.9995


def test_large_vocab_fp16_keeps_softmax_fp32(tmp_path, real_tokens):
    module = _module(vocab=4096, gain=8.0)
    paths = export_model(module, tmp_path)
    tokens = real_tokens[:4].reshape(4, 16, 16, 384)
    got16 = OrtRunner(paths["fp16"]).run({"tokens": tokens})["tokens_out"].astype(np.float32)
    assert row_cosines(got16, _outputs(module, tokens)["tokens_out"]).min() >= 0.9995


def test_hard_export_gives_identical_ids_on_real_tokens(tmp_path, real_tokens):
    module = _module(hard=True, gain=8.0)
    paths = export_model(module, tmp_path)
    real_tokens = real_tokens.reshape(-1, 16, 16, 384)
    want = _outputs(module, real_tokens)
    fp32 = onnx.load(paths["fp32"])
    assert output_dims(fp32)["visual_ids"] == ["batch", "out_tokens"]
    got = OrtRunner(paths["fp32"]).run({"tokens": real_tokens})
    gaps = np.stack([ref.ovis_vet_of(module, x, True)[2] for x in real_tokens])  # top-1 minus top-2 logit, float64
    clear = gaps > TIE  # pinned crops: smallest gap 2.6e-3, all 512 cells clear
    assert clear.mean() >= 0.99
    np.testing.assert_array_equal(got["visual_ids"][clear], want["visual_ids"][clear])
    assert (gaps[got["visual_ids"] != want["visual_ids"]] <= TIE).all()  # a disagreement only at a near-tie
    table = module.vte.weight.detach().numpy()
    np.testing.assert_array_equal(got["tokens_out"], table[got["visual_ids"]])  # rows of the table, copied
    got16 = OrtRunner(paths["fp16"]).run({"tokens": real_tokens})
    agree = float((got16["visual_ids"] == want["visual_ids"]).mean())
    assert agree >= 0.99, agree  # fp16 head MatMul: only near-tied words may flip (pinned crops: 1.0)
    np.testing.assert_array_equal(got16["tokens_out"], table.astype(np.float16)[got16["visual_ids"]])
    assert len(np.unique(want["visual_ids"])) >= 24  # real tokens use many words, not one (pinned crops: 36)


def test_config_round_trip_and_vocab_limit():
    module = _module(vocab=128, hard=True)
    again = build("ovis_vet", module.config)
    again.load_state_dict(module.state_dict())
    assert again.output_names == ["tokens_out", "visual_ids"]
    with pytest.raises(NtcError, match="vocab_size"):
        OvisVET(vocab_size=65537)
