"""Weight-only INT4 (AWQ) and NVFP4: formats against independent references (numpy reshapes, ml_dtypes, ONNX's own
4-bit packing, hand-checked values), the written DequantizeLinear nodes, AWQ against plain rounding, errors."""

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from ntc_export.backend.onnx.inspect import constant_bytes, onnx_precision
from ntc_export.calibration import calibrate
from ntc_export.calibration.awq import ALPHA_GRID
from ntc_export.calibration.blocked_dq import QuantizedWeight, insert_weight_dq
from ntc_export.calibration.int4 import int4_codes, int4_scales
from ntc_export.calibration.nvfp4 import nvfp4_dequantize, nvfp4_quantize
from ntc_export.calibration.qdq import Layer, find_layers
from ntc_export.evaluate.fidelity import fidelity
from ntc_export.util.errors import NtcError
from onnx import TensorProto, helper, numpy_helper

QUIET = dict(log=lambda text: None)
K, HIDDEN, N = 256, 384, 64


def _mlp(path, rng, gemm_head=False):
    """tokens [B, T, K] -> MatMul -> Relu -> MatMul (or Gemm transB on [B*T, HIDDEN]) : an fp32 two-layer MLP."""
    w1 = (rng.standard_normal((K, HIDDEN)) / np.sqrt(K)).astype(np.float32)
    w2 = (rng.standard_normal((HIDDEN, N)) / np.sqrt(HIDDEN)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["tokens", "w1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu")]
    inits = [numpy_helper.from_array(w1, "w1")]
    if gemm_head:
        nodes += [helper.make_node("Reshape", ["r", "flat"], ["r2"], name="flatten"),
                  helper.make_node("Gemm", ["r2", "w2t"], ["out"], name="fc2", transB=1)]
        inits += [numpy_helper.from_array(np.ascontiguousarray(w2.T), "w2t"),
                  numpy_helper.from_array(np.array([-1, HIDDEN], np.int64), "flat")]
        out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["BT", N])
    else:
        nodes.append(helper.make_node("MatMul", ["r", "w2"], ["out"], name="fc2"))
        inits.append(numpy_helper.from_array(w2, "w2"))
        out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["B", "T", N])
    tokens = helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["B", "T", K])
    model = helper.make_model(helper.make_graph(nodes, "mlp", [tokens], [out], inits),
                              opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(path))
    return path, w1, w2


def _tokens(rng, n, outliers):
    """LLM-like activations: most input channels small, a few (`outliers`) 20x larger on average."""
    x = rng.standard_normal((n, 16, K)).astype(np.float32)
    x[..., outliers] *= 20.0
    return x


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    outliers = rng.choice(K, 6, replace=False)
    return _tokens(rng, 24, outliers), _tokens(rng, 16, outliers)


def _run(path, x):
    so = ort.SessionOptions()
    # DequantizeLinear as written: ORT otherwise fuses blocked INT4 DQ + MatMul into MatMulNBits (int8 activations)
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = x.astype(np.float16 if sess.get_inputs()[0].type == "tensor(float16)" else np.float32)
    return sess.run(None, {"tokens": feed})[0].astype(np.float64)


def _block_dequant(codes, scales, axis, block):
    """Independent reference: each run of `block` values along `axis` times its one scale (reshape, no repeat)."""
    c = np.moveaxis(codes.astype(np.float64), axis, 0)
    s = np.moveaxis(scales.astype(np.float64), axis, 0)
    out = (c.reshape(s.shape[0], block, *c.shape[1:]) * s[:, None]).reshape(c.shape)
    return np.moveaxis(out, 0, axis)


def _initializers(model):
    return {t.name: t for t in model.graph.initializer}


def _dq_nodes(model):
    return [n for n in model.graph.node if n.op_type == "DequantizeLinear"]


def test_int4_graph_matches_an_independent_block_dequantization(tmp_path, data):
    calib, val = data
    fp32, _, _ = _mlp(tmp_path / "mlp.fp32.onnx", np.random.default_rng(1))
    result = calibrate(fp32, calib, "int4", "auto", tmp_path, holdout=val, **QUIET)
    model = onnx.load(str(result.model_path))
    inits = _initializers(model)
    assert onnx_precision(model) == "int4" and model.opset_import[0].version >= 21
    for dq in _dq_nodes(model):
        attrs = {a.name: helper.get_attribute_value(a) for a in dq.attribute}
        values, scale = inits[dq.input[0]], inits[dq.input[1]]
        assert attrs == {"axis": 0, "block_size": 128} and values.data_type == TensorProto.INT4
        assert scale.data_type == TensorProto.FLOAT16 and list(scale.dims) == [values.dims[0] // 128, values.dims[1]]
        codes = numpy_helper.to_array(values).astype(np.int64)  # onnx's own unpacking of the 4-bit storage
        assert codes.min() >= -8 and codes.max() <= 7 and len(np.unique(codes)) > 8
    # the whole graph by ONNX Runtime == the same graph with numpy-dequantized fp16 weights and the AWQ Mul
    reference = onnx.ModelProto.FromString(model.SerializeToString())
    for dq in _dq_nodes(reference):
        w = _block_dequant(numpy_helper.to_array(inits[dq.input[0]]), numpy_helper.to_array(inits[dq.input[1]]),
                           0, 128)
        reference.graph.initializer.append(numpy_helper.from_array(w.astype(np.float16), dq.output[0]))
    keep = [n for n in reference.graph.node if n.op_type != "DequantizeLinear"]
    del reference.graph.node[:]
    reference.graph.node.extend(keep)
    onnx.save(reference, str(tmp_path / "reference.onnx"))
    np.testing.assert_array_equal(_run(result.model_path, val), _run(tmp_path / "reference.onnx", val))
    # and the record's fidelity is what ONNX Runtime gives against the fp32 graph on the held-out tokens
    measured = fidelity(_run(fp32, val), _run(result.model_path, val))
    assert result.fidelity["out"]["cosine"] == pytest.approx(measured["cosine"], abs=1e-9)
    assert "ONNX Runtime CPU on the written graph" in result.fidelity_runtime


def test_awq_beats_plain_rounding_by_a_margin_the_data_sets(tmp_path, data):
    """The AWQ graph's error is below that of round-to-nearest INT4 (block 128, amax/7 scales) computed here in
    numpy on the same held-out tokens: the bar is the data's own plain-rounding error."""
    calib, val = data
    fp32, w1, w2 = _mlp(tmp_path / "mlp.fp32.onnx", np.random.default_rng(2))

    def rtn(w):
        s = (np.abs(w.reshape(-1, 128, w.shape[1])).max(axis=1) / 7).astype(np.float16).astype(np.float64)
        return np.clip(np.rint(w / np.repeat(s, 128, 0)), -8, 7) * np.repeat(s, 128, 0)

    ref = _run(fp32, val)
    plain = np.maximum(val.astype(np.float64) @ rtn(w1), 0) @ rtn(w2)
    plain_cos = fidelity(ref, plain)["cosine"]
    result = calibrate(fp32, calib, "int4", "auto", tmp_path, holdout=val, **QUIET)
    got = result.fidelity["out"]
    assert 1 - got["cosine"] < 0.8 * (1 - plain_cos), (got, plain_cos)
    assert result.weights["w1"]["alpha"] > 0  # the outlier channels move the search off plain rounding
    assert all(r["search_output_mse"] <= r["search_output_mse_plain"] for r in result.weights.values())
    assert len(result.weights) == 2 and ALPHA_GRID == 20


def test_block_size_is_configurable_and_gemm_trans_b_blocks_along_its_k_axis(tmp_path, data):
    calib, val = data
    fp32, _, _ = _mlp(tmp_path / "mlp.fp32.onnx", np.random.default_rng(3), gemm_head=True)
    result = calibrate(fp32, calib, "int4", "auto", tmp_path, block_size=64, **QUIET)
    model = onnx.load(str(result.model_path))
    inits = _initializers(model)
    by_output = {n.output[0]: n for n in _dq_nodes(model)}
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    dq = by_output[gemm.input[1]]
    assert {a.name: helper.get_attribute_value(a) for a in dq.attribute} == {"axis": 1, "block_size": 64}
    assert list(inits[dq.input[0]].dims) == [N, HIDDEN] and list(inits[dq.input[1]].dims) == [N, HIDDEN // 64]
    # weight bytes: 4-bit codes, fp16 scales, the rest as stored
    assert result.weight_bytes["int4"] == constant_bytes(model)
    codes_bytes = sum((int(np.prod(t.dims)) + 1) // 2 for t in model.graph.initializer if t.data_type == 22)
    assert codes_bytes == (K * HIDDEN + HIDDEN * N) // 2
    assert result.weight_bytes["fp16"] > 3 * codes_bytes


def test_nvfp4_encoding_against_ml_dtypes_and_hand_checked_values():
    # one block, amax 6: global = 6 / (6 * 448), block scale 6 / 6 / global = 448 (FP8 exact)
    w = np.array([6.0, -3.0, 1.5, 0.5, 0.25, 5.0, -0.74, 2.5, 0, 1, -1, 4, 3.5, -6, 0.76, 1.25], np.float32)[:, None]
    values, block_scales, global_scale = nvfp4_quantize(w)
    assert global_scale == np.float32(6.0 / 2688.0) and block_scales.astype(np.float32)[0, 0] == 448.0
    scale = np.float32(448.0) * global_scale  # the first DequantizeLinear, in fp32
    # w / scale ~ w; E2M1 rounds half to even: 0.25 -> 0, 5 -> 4, 2.5 -> 2, 3.5 -> 4, 1.25 -> 1; 0.74 -> 0.5
    expected = np.array([6, -3, 1.5, 0.5, 0, 4, -0.5, 2, 0, 1, -1, 4, 4, -6, 1, 1], np.float32)
    np.testing.assert_array_equal(values.astype(np.float32)[:, 0], expected)
    np.testing.assert_array_equal(nvfp4_dequantize(values, block_scales, global_scale)[:, 0], expected * scale)
    # random weights: every value is ml_dtypes' own rounding of w / (its block's FP8 scale x global)
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((64, 24)) * rng.uniform(0.01, 2, (1, 24))).astype(np.float32)
    values, block_scales, global_scale = nvfp4_quantize(w)
    s = block_scales.astype(np.float32).reshape(4, 1, 24) * global_scale
    direct = (w.reshape(4, 16, 24) / s).astype(ml_dtypes.float4_e2m1fn).reshape(64, 24)
    np.testing.assert_array_equal(values.view(np.uint8), direct.view(np.uint8))
    assert np.abs(block_scales.astype(np.float32)).max() <= 448.0
    err = np.abs(nvfp4_dequantize(values, block_scales, global_scale) - w)
    assert np.all(err <= np.repeat(s.reshape(4, 24), 16, 0) * 1.0 + 1e-7)  # half the widest E2M1 step (2)


def test_nvfp4_graph_two_level_dequantize_and_packing(tmp_path):
    layer = Layer("fc", "MatMul", "tokens", "w", 1)
    values = np.array([[0.5], [-6.0]] * 8, np.float32).astype(ml_dtypes.float4_e2m1fn)  # K=16, N=1
    block_scales = np.array([[2.0]], np.float32).astype(ml_dtypes.float8_e4m3fn)
    q = QuantizedWeight("nvfp4", layer, 16, values, block_scales, np.float32(0.25), None, np.dtype(np.float16))
    graph = helper.make_graph([helper.make_node("MatMul", ["tokens", "w"], ["out"], name="fc")], "g",
                              [helper.make_tensor_value_info("tokens", TensorProto.FLOAT16, ["B", 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT16, ["B", 1])],
                              [numpy_helper.from_array(np.zeros((16, 1), np.float16), "w")])
    model = insert_weight_dq(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), [q])
    onnx.checker.check_model(model, full_check=True)
    assert onnx_precision(model) == "nvfp4" and model.opset_import[0].version >= 23 and model.ir_version >= 11
    inits = _initializers(model)
    assert inits["w_nvfp4_values"].raw_data[:1] == bytes([0xF1])  # 0.5 = 0b0001 low nibble, -6 = 0b1111 high
    ops = [(n.op_type, [a.name for a in n.attribute]) for n in model.graph.node]
    assert ops[:3] == [("DequantizeLinear", []), ("DequantizeLinear", ["axis", "block_size"]), ("Cast", ["to"])]
    assert inits["w_nvfp4_scale"].data_type == TensorProto.FLOAT8E4M3FN
    assert inits["w_nvfp4_global_scale"].data_type == TensorProto.FLOAT
    ref = insert_weight_dq(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), [q], reference=True)
    np.testing.assert_array_equal(numpy_helper.to_array(_initializers(ref)["w_nvfp4_reference"])[:2, 0],
                                  np.array([0.5 * 2 * 0.25, -6 * 2 * 0.25], np.float16))


def test_nvfp4_calibration_writes_a_reference_form_onnx_runtime_runs(tmp_path, data):
    calib, val = data
    fp32, _, _ = _mlp(tmp_path / "mlp.fp32.onnx", np.random.default_rng(4))
    result = calibrate(fp32, calib, "nvfp4", "auto", tmp_path, holdout=val, **QUIET)
    assert onnx_precision(onnx.load(str(result.model_path))) == "nvfp4"
    measured = fidelity(_run(fp32, val), _run(tmp_path / "model.nvfp4.reference.onnx", val))
    assert result.fidelity["out"]["cosine"] == pytest.approx(measured["cosine"], abs=1e-9)
    assert "numpy two-level dequantization" in result.fidelity_runtime
    assert result.weight_bytes["nvfp4"] < result.weight_bytes["fp16"] / 3


def test_target_cosine_keeps_the_most_sensitive_layer_in_fp16(tmp_path, data):
    calib, val = data
    fp32, _, _ = _mlp(tmp_path / "mlp.fp32.onnx", np.random.default_rng(5))
    full = calibrate(fp32, calib, "int4", "auto", tmp_path / "a", holdout=val, **QUIET)
    target = (full.fidelity["out"]["cosine"] + 1) / 2  # halfway to exact: quantizing everything misses it
    kept = calibrate(fp32, calib, "int4", "auto", tmp_path / "b", holdout=val, target_cosine=target, **QUIET)
    worst = min(full.sensitivity, key=full.sensitivity.get)
    assert kept.kept_high_precision[0]["layer"] == worst
    assert kept.fidelity["out"]["cosine"] >= target or not kept.quantized_layers
    assert [n.op_type for n in onnx.load(str(kept.model_path)).graph.node].count("DequantizeLinear") == \
        len(kept.quantized_layers)


def test_bad_block_sizes_and_plugin_graphs_are_one_line_errors(tmp_path, data, capsys):
    from ntc_export.cli import main

    fp32, _, _ = _mlp(tmp_path / "mlp.fp32.onnx", np.random.default_rng(6))
    with pytest.raises(NtcError, match=r"^int4 block size 100 must be a power of two >= 16"):
        calibrate(fp32, data[0], "int4", "auto", tmp_path, block_size=100, **QUIET)
    with pytest.raises(NtcError, match="nvfp4 blocks are 16 values by definition"):
        calibrate(fp32, data[0], "nvfp4", "auto", tmp_path, block_size=32, **QUIET)
    with pytest.raises(NtcError, match="int4 is weight-only"):
        calibrate(fp32, data[0], "int4", "auto", tmp_path, plugin_onnx=fp32, **QUIET)
    np.savez(tmp_path / "calib.npz", patch_tokens=data[0])
    assert main(["calibrate", str(fp32), "--data", str(tmp_path / "calib.npz"), "--precision", "int4",
                 "--int4-block", "48", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: int4 block size 48 must be a power of two >= 16 (TensorRT takes 16 to 128)"]
    assert find_layers(onnx.load(str(fp32)))  # the graph itself was fine


def test_int4_and_fp16_block_scales_round_before_the_codes():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((256, 8)).astype(np.float32) * 1e-3
    scales = int4_scales(w, 128)
    codes = int4_codes(w, scales, 128)
    assert scales.dtype == np.float16
    direct = np.clip(np.rint(w / _block_dequant(np.ones_like(w), scales, 0, 128)), -8, 7)
    np.testing.assert_array_equal(codes, direct)
    assert np.abs(codes).max() == 7  # each block's largest |w| maps to +-7
