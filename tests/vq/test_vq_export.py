"""vq graphs in ONNX Runtime: the deployable decoder (indices -> tokens) against PyTorch at fp32 / fp16, and the
encoder graph (tokens -> indices): fp32 indices equal PyTorch's exactly, fp16 agreement measured."""

import numpy as np
import onnx
import pytest
import torch
from ntc_export.backend.onnx.export import export_model
from ntc_export.backend.onnxrt.runner import OrtRunner
from ntc_export.evaluate.validate import validate_onnx
from ntc_export.models.grid import as_grid
from vq_inputs import low_rank_tokens, tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=1)


@pytest.fixture(scope="module")
def decoder_records(model, tmp_path_factory):
    paths = export_model(model, tmp_path_factory.mktemp("vq_dec"), precisions=("fp32", "fp16"), name="vq")
    graph = onnx.load(str(paths["fp32"])).graph
    assert [i.name for i in graph.input] == ["indices"]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert any(n.op_type == "Gather" for n in graph.node)
    tokens = low_rank_tokens(3, seed=2)
    return {r["precision"]: r for r in validate_onnx("vq", model, paths, tokens)}


def test_decoder_fp32_in_onnx_runtime(decoder_records):
    record = decoder_records["fp32"]
    assert record["rel_l2"] <= 1e-5 and record["pass"]


def test_decoder_fp16_in_onnx_runtime(decoder_records):
    record = decoder_records["fp16"]
    assert record["cosine"] >= 0.9995 and record["pass"]


def test_decoder_dynamic_grid(model, tmp_path):
    """A 12x12 token grid (6x6 cells) runs through a graph traced at 16x16."""
    path = export_model(model, tmp_path, precisions=("fp32",), name="vq")["fp32"]
    indices = model.compress(low_rank_tokens(2, seed=3, grid=12))
    got = OrtRunner(path).run({"indices": indices})
    want = model(torch.from_numpy(indices)).detach().numpy()
    out = got["tokens_out"]
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


def test_encoder_graph_indices(model, tmp_path):
    encoder = model.encoder_graph().eval()
    paths = export_model(encoder, tmp_path, precisions=("fp32", "fp16"), name="vq_enc")
    graph = onnx.load(str(paths["fp32"])).graph
    assert [o.name for o in graph.output] == ["indices"]
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert sum(n.op_type == "ArgMin" for n in graph.node) == model.stages
    tokens = low_rank_tokens(4, seed=4)
    want = encoder(torch.from_numpy(tokens)).numpy()
    np.testing.assert_array_equal(want, model.compress(tokens))
    got = OrtRunner(paths["fp32"]).run({"tokens": as_grid(tokens)})
    got = got["indices"]
    np.testing.assert_array_equal(got, want)  # fp32: exactly PyTorch's indices
    half = OrtRunner(paths["fp16"]).run({"tokens": as_grid(tokens).astype(np.float16)})
    half = half["indices"]
    agreement = float((half == want).mean())
    print(f"vq encoder fp16 index agreement: {agreement:.4f}")
    assert half.dtype == np.int32 and agreement >= 0.9
