"""The int8 interface of weightless graphs (backend/onnx/int8_io.py): QuantizeLinear/DequantizeLinear semantics
against ONNX Runtime's own nodes, and a ToMe graph whose int8 artifact is the fp32 graph between them."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from ntc_export.backend.onnx.export import export_model
from ntc_export.backend.onnx.inspect import onnx_precision
from ntc_export.backend.onnx.int8_io import SCALES_KEY, dequantize, int8_interface, quantize, scale_for
from ntc_export.backend.onnxrt.runner import OrtRunner
from ntc_export.models import build
from onnx import TensorProto, helper, numpy_helper


def _ort_quantize_dequantize(x: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """ONNX Runtime's QuantizeLinear (int8 zero point) and DequantizeLinear on x: the independent reference."""
    inits = [numpy_helper.from_array(np.array(scale, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("q", TensorProto.INT8, list(x.shape)),
                               helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    q, y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    return q, y


def test_quantize_and_dequantize_match_onnx_runtime():
    scale = scale_for(3.0)
    rng = np.random.default_rng(0)
    ties = (np.arange(-130, 131) + 0.5) * np.float32(scale)  # exact halves: round half to even
    x = np.concatenate([rng.normal(0, 1.5, 4000), ties, [9.0, -9.0, 0.0]]).astype(np.float32)  # and saturation
    q, y = _ort_quantize_dequantize(x, scale)
    np.testing.assert_array_equal(quantize(x, scale), q)
    np.testing.assert_array_equal(dequantize(q, scale), y)
    assert quantize(np.array([9.0, -9.0], np.float32), scale).tolist() == [127, -128]
    assert scale == np.float32(3.0 / 127)


@pytest.fixture(scope="module")
def tome(tmp_path_factory):
    """A ToMe graph on keys (64 tokens of 32 dims, 2 steps) and its int8 interface; random tokens and keys."""
    module = build("tome", dict(input_dim=32, num_tokens=64, r=12, steps=2, keys_dim=16)).eval()
    folder = tmp_path_factory.mktemp("tome")
    fp32 = export_model(module, folder, ("fp32",))["fp32"]
    g = torch.Generator().manual_seed(3)
    feeds = {"tokens": (torch.randn(5, 64, 32, generator=g) * 2).numpy().reshape(5, 8, 8, 32),
             "keys": torch.randn(5, 64, 16, generator=g).numpy().reshape(5, 8, 8, 16)}  # on the 8x8 grid
    scales = {"tokens": scale_for(np.abs(feeds["tokens"]).max()), "tokens_out": scale_for(6.0)}
    int8 = folder / "model.int8.onnx"
    onnx.save(int8_interface(onnx.load(str(fp32)), scales), str(int8))
    return fp32, int8, feeds, scales


def test_int8_interface_types_and_metadata(tome):
    _, int8, _, scales = tome
    model = onnx.load(str(int8))
    types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    assert types == {"tokens": TensorProto.INT8, "keys": TensorProto.FLOAT16, "tokens_out": TensorProto.INT8,
                     "sizes": TensorProto.FLOAT16}  # the other streams fp16, as in the fp16 artifact
    io = {v.name for v in [*model.graph.input, *model.graph.output]}
    assert not [v.name for v in model.graph.value_info if v.name not in io and v.type.tensor_type.elem_type in (
        TensorProto.FLOAT16, TensorProto.INT8)]  # fp32 arithmetic inside
    assert onnx_precision(model) == "int8"
    assert [n.op_type for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")] == [
        "DequantizeLinear", "QuantizeLinear"]  # one at each token stream, nothing quantized inside
    meta = {p.key: p.value for p in model.metadata_props}
    assert OrtRunner(int8).int8_scales == pytest.approx(scales) and SCALES_KEY in meta


def test_int8_interface_is_the_fp32_graph_between_quantize_and_dequantize(tome):
    fp32, int8, feeds, scales = tome
    seen = {"tokens": dequantize(quantize(feeds["tokens"], scales["tokens"]), scales["tokens"]),
            "keys": feeds["keys"].astype(np.float16).astype(np.float32)}
    reference = OrtRunner(fp32).run(seen)  # the fp32 graph on the dequantized tokens and fp16-rounded keys
    raw = OrtRunner(int8, float_io=False).run({"tokens": quantize(feeds["tokens"], scales["tokens"]),
                                                 "keys": feeds["keys"].astype(np.float16)})
    assert raw["tokens_out"].dtype == np.int8 and raw["sizes"].dtype == np.float16
    np.testing.assert_array_equal(raw["tokens_out"], quantize(reference["tokens_out"], scales["tokens_out"]))
    np.testing.assert_array_equal(raw["sizes"], reference["sizes"])  # token counts: exact in fp16
    runner = OrtRunner(int8)
    assert runner.rounds_inputs and not OrtRunner(fp32).rounds_inputs
    for name in seen:
        np.testing.assert_array_equal(runner.seen_inputs(feeds)[name], seen[name])
    got = runner.run(feeds)  # float feeds in, float outputs out
    np.testing.assert_array_equal(got["tokens_out"], dequantize(raw["tokens_out"], scales["tokens_out"]))


def test_int8_interface_refuses_unknown_tensors(tome):
    fp32, *_ = tome
    with pytest.raises(ValueError, match="no float input or output named nope"):
        int8_interface(onnx.load(str(fp32)), {"nope": 0.1})
