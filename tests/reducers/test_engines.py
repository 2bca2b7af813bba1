"""The reducers' fp16 graphs are consistently typed (ONNX Runtime loads and runs them) and every graph builds as a
TensorRT-RTX engine ahead of time (no GPU needed), with the models' own fixed-token profiles."""

import numpy as np
import pytest
from ntc_export.backend.onnx.export import export_model
from ntc_export.backend.onnxrt.runner import OrtRunner
from ntc_export.backend.trt.profiles import DEFAULT_BATCH, DEFAULT_GRID
from ntc_export.models.ovis_vet import OvisVET
from ntc_export.models.tome import ToMe
from ntc_export.models.visionzip import VisionZip

MODELS = {"tome": lambda: ToMe(trace_source=True), "visionzip": lambda: VisionZip(heads=0),
          "ovis_vet": lambda: OvisVET(hard=True)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (module, {precision: path}) for each reducer."""
    out = {}
    for name, make in MODELS.items():
        module = make().eval()
        out[name] = module, export_model(module, tmp_path_factory.mktemp(name))
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fp16_graph_runs_in_ort(exported, name, real_tokens):
    module, paths = exported[name]
    feeds = {"tokens": real_tokens, "score": np.linalg.norm(real_tokens, axis=-1)}
    got = OrtRunner(paths["fp16"]).run({k: feeds[k] for k in module.input_names})
    assert got["tokens_out"].dtype == np.float16 and np.isfinite(got["tokens_out"]).all()
    assert got["tokens_out"].shape[1] == (64 if name != "tome" else 128)


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
