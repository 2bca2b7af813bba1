"""Every zoo model (five projectors, five BC-autoencoder decoders) calibrates to INT8 and FP8 Q/DQ ONNX that meets
the validation thresholds against PyTorch on held-out real tokens (ONNX Runtime CPU), and every Q/DQ graph builds
TensorRT-RTX engines ahead of time with its layers in the quantized type: int8 for rtx-ampere, fp8 for rtx-ada (the
lowest SM of each). The other RTX targets would build the same graph for another compute capability: which targets
take which precision is tests/backend/test_targets.py's table, and tests/backend/test_engine_build.py builds Q/DQ
graphs and every RTX target."""

import numpy as np
import onnx
import pytest
import torch
from ntc_export.backend.onnx.export import export_model
from ntc_export.calibration import calibrate
from ntc_export.data.tokens import builtin_images, extract_tokens, split_indices
from ntc_export.backend.onnx.scopes import module_path
from ntc_export.evaluate.validate import THRESHOLDS, golden_outputs, model_feeds, validate_onnx
from ntc_export.models import load
from ntc_export.util.errors import NtcError
from ntc_export.util.paths import ZOO_DIR

PROJECTORS = ["mlp2x_gelu", "patch_merger", "pixel_shuffle", "merge3x3", "conv16x"]
COMPRESSORS = ["bcae_x4", "bcae_x8", "bcae_x16", "bcae_x32", "bcae_x64"]
PRECISIONS = ("int8", "fp8")
METHOD = "minmax"  # fast; the benchmark compares every method
N_CALIB = 64
# 200 held-out digits: one flipped prediction is 0.5 point, the accuracy tolerance.
N_HELD = 200
# The decoders have no head; BcDecode runs on the host per texture plane in ORT, so fewer samples keep CI fast
# (32 x 256 tokens x 384 values still give a stable cosine).
N_CALIB_BCAE, N_HELD_BCAE = 32, 32
ACCURACY_TOLERANCE = 0.005
# One target per precision: the graph is what differs between models, not the SM it is built for.
RTX_BUILDS = [("rtx-ampere", "int8"), ("rtx-ada", "fp8")]
QUIET = {"log": lambda text: None}


def lowerings(name: str) -> list[str]:
    """What ships: native attention on RTX, the ntc::WindowAttention plugin on Jetson; projectors have no attention."""
    return ["native", "plugin"] if name.startswith("bcae") else ["decomposed"]


@pytest.fixture(scope="module")
def digits():
    """(calib tokens, held-out tokens, held-out labels): disjoint built-in digits splits through the ViT."""
    images, labels, _ = builtin_images("digits")
    calib_idx = split_indices("digits", "calib", len(images))[:N_CALIB]
    held_idx = split_indices("digits", "val", len(images))[:N_HELD]
    assert not set(calib_idx) & set(held_idx)
    tokens = extract_tokens([images[i] for i in [*calib_idx, *held_idx]], size=224, progress=False)[:, 1:]
    return np.ascontiguousarray(tokens[:N_CALIB]), np.ascontiguousarray(tokens[N_CALIB:]), labels[held_idx]


class Quantized:
    """One zoo model exported per lowering and calibrated per precision (computed once per test module)."""

    def __init__(self, name: str, digits, folder):
        calib, held, labels = digits
        path = ZOO_DIR / f"{name}.pt"
        assert path.exists(), f"zoo checkpoint {path} missing: run scripts/build_zoo.py / build_zoo_compressors.py"
        self.name, self.module = name, load(path)
        n_calib, n_held = (N_CALIB_BCAE, N_HELD_BCAE) if name.startswith("bcae") else (N_CALIB, N_HELD)
        self.held, self.labels = held[:n_held], labels[:n_held]
        self.calib_feeds = model_feeds(self.module, calib[:n_calib])
        self.held_feeds = model_feeds(self.module, self.held)
        self.golden = golden_outputs(self.module, self.held_feeds)
        self.onnx, self.results = {}, {}
        for lowering in lowerings(name):
            out = folder / lowering
            fp32 = export_model(self.module, out, ("fp32",), attention=lowering)["fp32"]
            self.onnx[lowering] = {"fp32": fp32}
            for precision in PRECISIONS:
                # The call the main job makes: the model's own feeds, whatever its inputs are.
                result = calibrate(fp32, self.calib_feeds, precision, METHOD, out, **QUIET)
                self.onnx[lowering][precision] = result.model_path
                self.results[lowering, precision] = result


@pytest.fixture(scope="module")
def zoo(digits, tmp_path_factory):
    made = {}

    def get(name: str) -> Quantized:
        if name not in made:
            made[name] = Quantized(name, digits, tmp_path_factory.mktemp(name))
        return made[name]

    return get


def _consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    out = {}
    for node in model.graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


@pytest.mark.parametrize("name", PROJECTORS + COMPRESSORS)
def test_qdq_models_meet_thresholds_on_held_out_tokens(name, zoo):
    q = zoo(name)
    for lowering, paths in q.onnx.items():
        records = validate_onnx(name, q.module, {p: paths[p] for p in PRECISIONS}, q.held, q.labels,
                                golden=q.golden, feeds=q.held_feeds)
        assert {r["output"] for r in records} == set(q.golden)
        for r in records:
            bound = THRESHOLDS[r["precision"]][2]
            assert r["cosine"] >= bound, (lowering, r["precision"], r["output"], r["cosine"])
            if r["task_metric"] is not None:  # a digits head: quantization keeps the accuracy
                assert abs(r["task_metric"] - r["task_metric_golden"]) <= ACCURACY_TOLERANCE + 1e-9, \
                    (lowering, r["precision"], r["task_metric"], r["task_metric_golden"])
        if name in PROJECTORS:
            assert all(r["task_metric_golden"] >= 0.8 for r in records)
        for precision in PRECISIONS:
            result = q.results[lowering, precision]
            assert result.quantized_layers and not result.kept_high_precision
            model = onnx.load(str(paths[precision]))
            ops = [n.op_type for n in model.graph.node]
            assert ops.count("QuantizeLinear") >= 1 and ops.count("DequantizeLinear") > len(result.quantized_layers)
            fp32 = onnx.load(str(paths["fp32"]))
            plugins = lambda m: sorted((n.op_type, str(n.attribute)) for n in m.graph.node if n.domain == "ntc")
            assert plugins(model) == plugins(fp32)  # ntc:: nodes untouched
            inputs = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
            assert inputs == {i.name: i.type.tensor_type.elem_type for i in fp32.graph.input}
            for name_in in inputs:  # model inputs (tokens, INT32 blocks) are never quantized in place
                assert all(n.op_type != "QuantizeLinear" or inputs[name_in] == onnx.TensorProto.FLOAT
                           for n in _consumers(model).get(name_in, []))


def test_decoder_scales_come_from_the_decoded_blocks(zoo):
    """minmax scale of the decoder's latent matmuls' input = max |z / s| in PyTorch over the calibration blocks (an
    independent run: PyTorch with the host BC decoder vs ONNX Runtime statistics), and both latent matmuls (basis
    and `up`, balanced weights stored as constants) are quantized."""
    q = zoo("bcae_x64")
    seen, decode_latent = [], q.module.decode_latent

    def recording(unit, h, w):
        seen.append(((unit - q.module.to_unit_offset) / q.module._divisor).abs().max().item())
        return decode_latent(unit, h, w)

    q.module.decode_latent = recording
    try:
        with torch.inference_mode():
            q.module(torch.from_numpy(q.calib_feeds["blocks"]))
    finally:
        del q.module.decode_latent
    model = onnx.load(str(q.onnx["native"]["fp32"]))
    latent = [n for n in model.graph.node if n.op_type == "MatMul" and not n.name.startswith(("/blocks", "/out"))
              and module_path(n)[:1] not in (["blocks"], ["out"])]  # either exporter's scopes
    assert len(latent) == 2 and latent[0].input[0] == latent[1].input[0]
    for precision, qmax in (("int8", 127.0), ("fp8", 448.0)):
        result = q.results["native", precision]
        assert {n.name for n in latent} <= set(result.quantized_layers)
        act = result.activations[latent[0].input[0]]
        assert act["amax"] == pytest.approx(max(seen), rel=1e-5)
        assert act["scale"] == pytest.approx(max(seen) / qmax, rel=1e-5)
    assert "blocks" not in q.results["native", "int8"].activations


def test_feeds_are_checked_and_hashed_for_the_cache(zoo, tmp_path):
    q = zoo("bcae_x64")
    fp32 = q.onnx["plugin"]["fp32"]
    blocks = q.calib_feeds["blocks"]
    with pytest.raises(NtcError, match="model input 'blocks' is int32; calibration feeds float32 tokens"):
        calibrate(fp32, q.held, "int8", METHOD, tmp_path, **QUIET)
    with pytest.raises(NtcError, match="feeds must name exactly the model inputs \\(blocks\\): missing 'blocks'; "
                                       "not an input: 'tokens'"):
        calibrate(fp32, {"tokens": q.held}, "int8", METHOD, tmp_path, **QUIET)
    with pytest.raises(NtcError, match="feed 'blocks' is float32; the model input is int32"):
        calibrate(fp32, {"blocks": blocks.astype(np.float32)}, "int8", METHOD, tmp_path, **QUIET)
    with pytest.raises(NtcError, match=r"feed 'blocks' has shape \[32, 48, 2, 2, 3\]; the model input expects "
                                       r"\[\?, 48, \?, \?, 4\]"):
        calibrate(fp32, {"blocks": blocks[..., :3]}, "int8", METHOD, tmp_path, **QUIET)
    with pytest.raises(NtcError, match="too small: 8 samples"):
        calibrate(fp32, {"blocks": blocks[:8]}, "int8", METHOD, tmp_path, **QUIET)
    # Same feeds -> cache hit; one changed block word -> the data item of the key changed, nothing else.
    first = q.results["plugin", "int8"]
    again = calibrate(fp32, q.calib_feeds, "int8", METHOD, first.model_path.parent, **QUIET)
    assert again.reused and "cache hit" in again.cache_message
    changed = blocks.copy()
    changed[0, 0, 0, 0, 0] ^= 1
    other = calibrate(fp32, {"blocks": changed}, "int8", METHOD, tmp_path, **QUIET)
    assert not other.reused
    stale = calibrate(fp32, {"blocks": changed}, "int8", METHOD, first.model_path.parent, **QUIET)
    assert "calibration data changed" in stale.cache_message and "method" not in stale.cache_message


@pytest.mark.parametrize("name,lowering", [(n, "decomposed") for n in PROJECTORS] +
                         [(n, low) for n in COMPRESSORS for low in ("native", "plugin")])
def test_qdq_graphs_build_rtx_engines(name, lowering, zoo, tmp_path):
    pytest.importorskip("tensorrt_rtx_bindings")
    from ntc_export.backend.trt.build import build_engine
    from ntc_export.backend.trt.manifest import read_manifest
    from ntc_export.backend.trt.profiles import DEFAULT_BATCH, DEFAULT_GRID

    q = zoo(name)
    staged = {}
    for precision in PRECISIONS:  # engines are named after the ONNX stem minus the precision
        staged[precision] = tmp_path / f"{name}.{precision}.onnx"
        staged[precision].write_bytes(q.onnx[lowering][precision].read_bytes())
    fp32 = onnx.load(str(q.onnx[lowering]["fp32"]))
    custom = {n.op_type for n in fp32.graph.node if n.domain == "ntc"}
    if name.startswith("bcae"):
        assert custom == ({"BcDecode", "WindowAttention"} if lowering == "plugin" else {"BcDecode"})
        assert (lowering == "native") == any(n.op_type == "Attention" for n in fp32.graph.node)
    out = tmp_path / "out"
    for target, precision in RTX_BUILDS:
        entry = build_engine(staged[precision], target, precision, out, profiles=q.module.input_profiles(DEFAULT_BATCH, DEFAULT_GRID))
        assert entry["engine"] == f"{target}/{name}.{precision}.engine"
        assert (out / "engines" / entry["engine"]).is_file()
        by_precision = entry["layer_summary"]["by_precision"]
        assert by_precision.get(precision, 0) >= len(q.results[lowering, precision].quantized_layers) // 2, by_precision
    manifest = read_manifest(out)["engines"]
    assert sorted((e["target"], e["precision"]) for e in manifest) == sorted(RTX_BUILDS)
    for e in manifest:
        assert e["model"] == name and e["layer_summary"]["by_precision"].get(e["precision"], 0) > 0
