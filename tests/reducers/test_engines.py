"""The reducers' fp16 graphs are consistently typed (ONNX Runtime loads and runs them) and match PyTorch on the
fp16-rounded inputs they see, on the square grid and on a non-square one, and every graph builds as a TensorRT-RTX
engine ahead of time (no GPU needed), with the models' own grid profiles."""

import numpy as np
import pytest
import reducer_refs as ref
import torch
from ntc_export.backend.onnx.export import export_model
from ntc_export.backend.onnxrt.runner import OrtRunner
from ntc_export.backend.trt.profiles import DEFAULT_BATCH, DEFAULT_GRID
from ntc_export.evaluate.validate import golden_outputs
from ntc_export.models.ovis_vet import OvisVET
from ntc_export.models.tome import ToMe
from ntc_export.models.visionzip import VisionZip
from reducer_graphs import row_cosines

MODELS = {"tome": lambda: ToMe(trace_source=True), "visionzip": lambda: VisionZip(heads=0),
          "ovis_vet": lambda: OvisVET(hard=True)}
CLEAR = 1e-6  # a cosine gap below this is a near-tie for the fp32 selection inside ToMe's and VisionZip's fp16 graphs
FP16_TIE = 0.02  # a logit gap below this may flip in ovis_vet's fp16 head MatMul (its logit error: up to 2e-3)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (module, {precision: path}) for each reducer."""
    out = {}
    for name, make in MODELS.items():
        torch.manual_seed(0)  # ovis_vet's random weights: the same numbers, hence the same near-ties, every run
        module = make().eval()
        out[name] = module, export_model(module, tmp_path_factory.mktemp(name))
    return out


def _flat(x: np.ndarray) -> np.ndarray:
    """One image's tokens [h, w, C] (or a score [h, w]) -> flat, row-major."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def _check_tome(module, seen, got, want) -> None:
    clear = [b for b, x in enumerate(seen["tokens"]) if ref.tome(_flat(x), module.r, module.steps)[3] > CLEAR]
    assert len(clear) >= len(seen["tokens"]) // 2  # 16x16: 5 of the 8 pinned crops, fp16-rounded (one 5.2e-7)
    for b in clear:
        for name in ("sizes", "source"):
            np.testing.assert_array_equal(got[name][b].astype(np.float32), want[name][b])
        assert row_cosines(got["tokens_out"][b], want["tokens_out"][b]).min() >= 0.9995  # measured 1 - 4e-8


def _check_visionzip(module, seen, got, want) -> None:
    np.testing.assert_array_equal(got["dominant_indices"], want["dominant_indices"])  # same scores, TopK's tie rule
    pairs = zip(seen["tokens"], seen["score"])
    margins = np.array([ref.visionzip(_flat(x), _flat(s), module.dominant, module.contextual)[2] for x, s in pairs])
    clear = margins > CLEAR  # pinned crops: all 8, smallest margin 6.1e-6
    assert clear.sum() >= len(margins) - 2
    assert row_cosines(got["tokens_out"][clear], want["tokens_out"][clear]).min() >= 0.9995  # measured 1 - 3e-8


def _check_ovis_vet(module, seen, got, want) -> None:
    gaps = np.stack([ref.ovis_vet_of(module, x, True)[2] for x in seen["tokens"]])
    clear = gaps > FP16_TIE
    assert clear.mean() >= 0.9  # pinned crops: 97.5% (16x16), 94.5% (13x21, its zero-padded edge cells included)
    ids = want["visual_ids"].astype(np.int64)
    np.testing.assert_array_equal(got["visual_ids"][clear], ids[clear])
    assert (gaps[got["visual_ids"] != ids] <= FP16_TIE).all()  # a flip only at a near-tie
    table = module.vte.weight.detach().numpy().astype(np.float16)
    np.testing.assert_array_equal(got["tokens_out"], table[got["visual_ids"]])  # the chosen rows of the fp16 table


CHECKS = {"tome": _check_tome, "visionzip": _check_visionzip, "ovis_vet": _check_ovis_vet}


@pytest.mark.parametrize("grid", ["16x16", "13x21"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_fp16_graph_runs_in_ort_and_matches_pytorch(exported, name, grid, real_tokens, odd_grid_tokens):
    module, paths = exported[name]
    tokens = real_tokens.reshape(-1, 16, 16, 384) if grid == "16x16" else odd_grid_tokens
    given = {"tokens": tokens, "score": np.linalg.norm(tokens, axis=-1)}
    feeds = {k: given[k] for k in module.input_names}
    runner = OrtRunner(paths["fp16"])
    got = runner.run(feeds)
    assert got["tokens_out"].dtype == np.float16 and np.isfinite(got["tokens_out"]).all()
    n = tokens.shape[1] * tokens.shape[2]
    cells = -(-tokens.shape[1] // 2) * -(-tokens.shape[2] // 2)  # ovis_vet: 2x2 cells of the zero-padded grid
    assert got["tokens_out"].shape[1] == {"tome": n - 128, "visionzip": 64, "ovis_vet": cells}[name]
    seen = runner.seen_inputs(feeds)  # the reference is fed what the graph's arithmetic sees
    CHECKS[name](module, seen, got, golden_outputs(module, seen))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_engine_builds_ahead_of_time(exported, name, precision, tmp_path):
    pytest.importorskip("tensorrt_rtx_bindings")
    from ntc_export.backend.trt.build import build_engine

    module, paths = exported[name]
    profiles = module.input_profiles(DEFAULT_BATCH, DEFAULT_GRID)
    entry = build_engine(paths[precision], "rtx-ada", precision, tmp_path, profiles=profiles, name=name)
    assert entry["cache"] == "miss"
    assert (tmp_path / "engines" / entry["engine"]).stat().st_size > 0
