"""hyperprior graphs in ONNX Runtime: the synthesis ("latents" -> tokens_out) and the hyper-synthesis ("z_hat" ->
"scales"), fp32 and fp16, against PyTorch on feeds from the real quantiser; dynamic latent grids, non-square ones
included (odd latent sides)."""

import numpy as np
import onnx
import pytest
from hp_inputs import low_rank_tokens
from ntc_export.backend.onnx.export import export_model
from ntc_export.evaluate.validate import validate_onnx


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("hp_onnx")
    return (export_model(model, out, precisions=("fp32", "fp16"), name="hp"),
            export_model(model.hyper_synthesis_graph(), out, precisions=("fp32", "fp16"), name="hp_hs"))


def _records(name, module, paths, tokens):
    return {r["precision"]: r for r in validate_onnx(name, module, paths, tokens)}


def test_synthesis_graph_inputs_and_fidelity(model, exported):
    paths = exported[0]
    graph = onnx.load(str(paths["fp32"])).graph
    assert [i.name for i in graph.input] == ["latents"] and [o.name for o in graph.output] == ["tokens_out"]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert all(n.domain in ("", "ai.onnx") for n in graph.node)  # standard ONNX only: entropy coding is on the host
    tokens = low_rank_tokens(3, seed=11)
    records = _records("hp", model, paths, tokens)
    assert records["fp32"]["rel_l2"] <= 1e-5 and records["fp32"]["pass"]
    assert records["fp16"]["cosine"] >= 0.9995


def test_hyper_synthesis_graph_fidelity(model, exported):
    paths = exported[1]
    graph = onnx.load(str(paths["fp32"])).graph
    assert [i.name for i in graph.input] == ["z_hat"] and [o.name for o in graph.output] == ["scales"]
    tokens = low_rank_tokens(3, seed=12)
    hs = model.hyper_synthesis_graph()
    feeds = hs.prepare_inputs(tokens)
    assert feeds["z_hat"].shape == (3, model.hyper, 4, 4)
    records = _records("hp_hs", hs, paths, tokens)
    assert records["fp32"]["rel_l2"] <= 1e-5 and records["fp32"]["pass"]
    assert records["fp16"]["cosine"] >= 0.9995


@pytest.mark.parametrize("grid, cells, hyper", [((8, 8), (4, 4), (2, 2)), ((7, 5), (4, 3), (2, 2)),
                                                ((26, 46), (13, 23), (7, 12))])
def test_dynamic_latent_grid(model, exported, grid, cells, hyper):
    """Both graphs take every grid: tokens padded to whole 2x2 cells (latents), z_hat a side of ceil(cells / 2)."""
    import onnxruntime as ort
    import torch

    tokens = low_rank_tokens(2, seed=13, grid=grid).reshape(2, *grid, 384)
    hs = model.hyper_synthesis_graph()
    for paths, module, name, want in ((exported[0], model, "latents", cells), (exported[1], hs, "z_hat", hyper)):
        feed = module.prepare_inputs(tokens)[name]
        assert feed.shape[2:] == want and feed.shape == tuple(module.example_inputs(2, grid)[0].shape)
        got = ort.InferenceSession(str(paths["fp32"]), providers=["CPUExecutionProvider"]).run(None, {name: feed})[0]
        with torch.no_grad():
            ref = module(torch.from_numpy(feed)).numpy()
        assert got.shape == ref.shape and np.linalg.norm(got - ref) <= 1e-5 * np.linalg.norm(ref)
    assert ref.shape[2:] == (2 * hyper[0], 2 * hyper[1])  # scales, cropped to the latent cells on the host
