"""ONNX Runtime sessions score Q/DQ graphs with exact Q/DQ arithmetic (what TensorRT computes) on every CPU; only
latency sessions let ORT fuse Q/DQ into its int8 kernels, whose numerics depend on the CPU: on AVX2 without VNNI
the u8 x s8 path saturates 16-bit pair sums, and this graph is built to hit it (activations 255, weights 120..127)."""

import numpy as np
import onnx
import onnxruntime as ort
from ntc_export.backend.onnxrt.runner import OrtRunner, ort_session_options
from ntc_export.evaluate.latency import cpu_isa
from onnx import TensorProto, helper, numpy_helper

K, N = 64, 16
SX, SW, SY = np.float32(1 / 255), np.float32(0.01), np.float32(0.5)


def _graph(path):
    w = np.where(np.random.default_rng(0).random((K, N)) < 0.5, 127, 120).astype(np.int8)
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((w, "w_q"), (SW, "sw"), (np.int8(0), "zw"), (SX, "sx"), (np.uint8(0), "zx"), (SY, "sy"),
              (np.uint8(0), "zy"))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w_q", "sw", "zw"], ["wd"]),
             helper.make_node("MatMul", ["xd", "wd"], ["y"]),
             helper.make_node("QuantizeLinear", ["y", "sy", "zy"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["out"])]
    graph = helper.make_graph(nodes, "qdq_matmul", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, K])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, N])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    onnx.save(model, path)
    return w


def _optimized_ops(path, tmp_path, fused: bool) -> list[str]:
    so = ort_session_options(fused_qdq=fused)
    so.optimized_model_filepath = str(tmp_path / f"opt_{fused}.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]


def test_exact_session_keeps_qdq_arithmetic_and_fused_depends_on_the_cpu(tmp_path):
    path = tmp_path / "m.onnx"
    w = _graph(path)
    assert "QLinearMatMul" not in _optimized_ops(path, tmp_path, fused=False)
    assert "QLinearMatMul" in _optimized_ops(path, tmp_path, fused=True)
    x = np.ones((4, K), np.float32)  # quantizes to 255
    ref = np.clip(np.rint((255 * w.astype(np.int64)).sum(0) * SX * SW / SY), 0, 255) * SY  # int32 accumulation
    exact = OrtRunner(path, custom_ops=False).run({"x": x})["out"]
    fused = OrtRunner(path, custom_ops=False, fused_qdq=True).run({"x": x})["out"]
    np.testing.assert_allclose(exact, np.broadcast_to(ref, exact.shape), rtol=1e-6)
    rel = np.abs(fused - ref).max() / np.abs(ref).max()
    if cpu_isa() == "AVX2":  # saturating u8 x s8 pairs: 2 * 255 * 127 > 32767
        assert rel > 0.1, rel
    else:  # VNNI / AMX accumulate in int32 like TensorRT
        assert rel < 1e-6, rel


def test_calibrated_int8_weights_keep_fused_avx2_sessions_exact(tmp_path):
    """Our INT8 weight scales keep every same-sign adjacent-K pair of codes within 128, so the same saturating case
    (activations at the top code, weights all near their channel maximum) computes exactly in ORT's fused kernels
    on any CPU, AVX2 included."""
    from ntc_export.calibration.qdq import find_layers, insert_qdq, node_names, same_sign_pair_max, weight_scales

    w = (np.random.default_rng(0).uniform(1.20, 1.27, (K, N))).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["out"])], "matmul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, K])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, N])],
                              [numpy_helper.from_array(w, "w")])
    model = node_names(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]))
    model.ir_version = 9
    layers = find_layers(model)
    scales = weight_scales(w, layers[0].axis, "int8")
    assert np.all(same_sign_pair_max(w, 1) / scales <= 127 + 1e-4)
    path = tmp_path / "q.onnx"
    onnx.save(insert_qdq(model, layers, {"x": 1 / 127}, {"w": scales}, "int8"), path)
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    codes = np.abs(next(v for k, v in inits.items() if k.endswith("_codes")).astype(np.int64))
    assert (codes[0::2] + codes[1::2]).max() <= 128  # 255 * 128 = 32640 fits an int16 pair sum
    assert codes.max() >= 63  # the bound halves the scale at most
    x = np.ones((4, K), np.float32)  # quantizes to 127: u8 255 in the kernel
    ref = (127 * codes.astype(np.int64) * (1 / 127) * scales.astype(np.float64)).sum(0)
    exact = OrtRunner(path, custom_ops=False).run({"x": x})["out"]
    fused = OrtRunner(path, custom_ops=False, fused_qdq=True).run({"x": x})["out"]
    np.testing.assert_allclose(exact, np.broadcast_to(ref, exact.shape), rtol=1e-5)
    np.testing.assert_allclose(fused, exact, rtol=1e-5)
