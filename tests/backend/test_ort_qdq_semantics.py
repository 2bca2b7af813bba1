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
