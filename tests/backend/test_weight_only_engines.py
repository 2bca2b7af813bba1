"""TensorRT-RTX AOT builds of weight-only graphs (no GPU needed): INT4 blocked DequantizeLinear on sm_86, NVFP4's
two-level DequantizeLinear on sm_120, their refusals, and engine bytes against the fp16 engine of the same graph."""

import numpy as np
import pytest
from ntc_export.calibration.blocked_dq import QuantizedWeight, insert_weight_dq
from ntc_export.calibration.int4 import int4_codes, int4_scales
from ntc_export.calibration.nvfp4 import nvfp4_quantize
from ntc_export.calibration.qdq import Layer
from ntc_export.util.errors import NtcError
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("tensorrt_rtx_bindings")

from ntc_export.backend.trt.build import build_engine  # noqa: E402

K = N = 1024  # 2 MiB of fp16 weights: enough for the weight bytes to show in the engine


def _fp16_graph(w: np.ndarray):
    graph = helper.make_graph([helper.make_node("MatMul", ["tokens", "w"], ["out"], name="fc")], "wo",
                              [helper.make_tensor_value_info("tokens", TensorProto.FLOAT16, ["B", "T", K])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT16, ["B", "T", N])],
                              [numpy_helper.from_array(w.astype(np.float16), "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _quantized(w: np.ndarray, precision: str) -> QuantizedWeight:
    layer = Layer("fc", "MatMul", "tokens", "w", 1)
    if precision == "int4":
        scales = int4_scales(w, 128)
        return QuantizedWeight("int4", layer, 128, int4_codes(w, scales, 128), scales, None, None,
                               np.dtype(np.float16))
    values, block_scales, global_scale = nvfp4_quantize(w)
    return QuantizedWeight("nvfp4", layer, 16, values, block_scales, global_scale, None, np.dtype(np.float16))


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    import onnx

    folder = tmp_path_factory.mktemp("weight_only")
    w = (np.random.default_rng(0).standard_normal((K, N)) / np.sqrt(K)).astype(np.float32)
    model = _fp16_graph(w)
    paths = {"fp16": folder / "fc.fp16.onnx"}
    onnx.save(model, str(paths["fp16"]))
    for precision in ("int4", "nvfp4"):
        paths[precision] = folder / f"fc.{precision}.onnx"
        onnx.save(insert_weight_dq(model, [_quantized(w, precision)]), str(paths[precision]))
    return paths


@pytest.mark.parametrize("target,precision", [("rtx-ampere", "int4"), ("rtx-blackwell", "nvfp4")])
def test_weight_only_engines_build_and_are_smaller_than_fp16(graphs, tmp_path, target, precision):
    low = build_engine(graphs[precision], target, precision, tmp_path, name="fc")
    fp16 = build_engine(graphs["fp16"], target, "fp16", tmp_path, name="fc")
    # 4-bit weights (+ one fp16 scale per 128, or one FP8 scale per 16) save most of the 2 MiB of fp16 weights
    saved = fp16["weight_bytes"] - low["weight_bytes"]
    assert saved > 0.7 * fp16["weight_bytes"]
    assert fp16["engine_bytes"] - low["engine_bytes"] > 0.5 * saved
    assert low["inputs"][0]["dtype"] == "fp16" and low["outputs"][0]["dtype"] == "fp16"


def test_nvfp4_is_refused_before_any_build_where_fp4_is_not_built(graphs, tmp_path):
    with pytest.raises(NtcError, match=r"^nvfp4 needs FP4 \(built on TensorRT-RTX for sm_120/sm_121 only\): rtx-ada"):
        build_engine(graphs["nvfp4"], "rtx-ada", "nvfp4", tmp_path)
    with pytest.raises(NtcError, match="fc.int4.onnx is int4-typed but precision fp16 was asked"):
        build_engine(graphs["int4"], "rtx-ampere", "fp16", tmp_path)
    assert not (tmp_path / "engines" / "rtx-ada").exists()
