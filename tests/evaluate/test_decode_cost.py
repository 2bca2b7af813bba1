"""Decode cost of a route: onnx-tool's FLOPs against PyTorch's FlopCounterMode on the same module, FLOPs and bytes of
small graphs against hand counts (the BC decode profiler included), the compressors' decode graphs run in ONNX Runtime
against their torch modules, the PCA decode graphs against `decode()`, and the roofline arithmetic by hand."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from ntc_export.evaluate import decode_cost, pca_reference, roofline
from ntc_export.models import load
from ntc_export.util.errors import NtcError
from ntc_export.util.paths import ZOO_DIR
from onnx import TensorProto, helper
from torch.utils.flop_counter import FlopCounterMode

GRID = (6, 10)  # a non-square grid, even sides (whole 2x2 cells)
TENSOR_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose")


def run_ort(graph: decode_cost.DecodeGraph) -> np.ndarray:
    session = ort.InferenceSession(graph.model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, graph.feeds)[0]


def zoo_route(name: str):
    module = load(ZOO_DIR / f"{name}.pt").eval()
    tokens = module.example_input(1, GRID).numpy()
    return module, decode_cost.compressor_graphs(module, tokens)


@pytest.fixture(scope="module")
def vq():
    return zoo_route("vq_x16")


@pytest.fixture(scope="module")
def hyperprior():
    return zoo_route("hp_x28")


# ---- (a) FLOPs against an independent count -------------------------------------------------------------------------

def test_tensor_flops_match_torch_flop_counter(vq):
    """Both count 2*M*N*K per matrix product (the decoder's Linear layers and window-attention products): equal up to
    a Gemm's bias, one MAC per output in onnx-tool and none in FlopCounterMode (< 0.1% here). onnx-tool also counts
    the elementwise work (LayerNorm, Softmax, adds, masks) that FlopCounterMode ignores: a few percent on top."""
    module, (graph,) = vq
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(torch.from_numpy(graph.feeds["indices"]))
    by_op = decode_cost.op_flops(graph)
    tensor = sum(by_op.get(op, 0) for op in TENSOR_OPS)
    assert counter.get_total_flops() > 0
    assert tensor == pytest.approx(counter.get_total_flops(), rel=1e-3)
    total = decode_cost.graph_counts([graph])["flops"]
    assert total == sum(by_op.values())
    assert 0 < (total - tensor) / tensor < 0.1


def test_small_graph_counts_by_hand():
    """PCA dequantization (codes [1, T, k] -> tokens [1, T, D]): MACs T*k (Mul) + T*k (Add) + T*k*D (MatMul) + T*D
    (Add), 2 FLOPs each; bytes moved = weights (step, lo [k], basis [k, D], mean [D]) + every node output in float32
    (Cast, Mul, Add [T, k]; MatMul, Add [T, D]); compulsory = weights + codes (uint8) + tokens."""
    rng = np.random.default_rng(0)
    t, k, d = 35, 5, 12
    codec = pca_reference.PcaCodec(rng.standard_normal(d).astype(np.float32),
                                   np.linalg.qr(rng.standard_normal((d, d)))[0][:k].astype(np.float32),
                                   -np.ones(k, np.float32), np.ones(k, np.float32), 4)
    graphs = codec.decode_graphs(rng.standard_normal((1, 5, 7, d)).astype(np.float32))
    weights = 4 * (2 * k + k * d + d)
    assert decode_cost.graph_counts(graphs) == {
        "flops": 2 * (2 * t * k + t * k * d + t * d),
        "bytes_moved": weights + 4 * (3 * t * k + 2 * t * d),
        "bytes_compulsory": weights + t * k + 4 * t * d}


def bc_decode_graph(layout: str) -> decode_cost.DecodeGraph:
    node = helper.make_node("BcDecode", ["blocks"], ["texels"], domain="ntc", format="bc5", layout=layout,
                            dtype="float16", plugin_version="1")
    graph = helper.make_graph([node], "bc", [helper.make_tensor_value_info("blocks", TensorProto.INT32, [1, 2, 3, 4])],
                              [helper.make_tensor_value_info("texels", TensorProto.FLOAT16, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ntc", 1)])
    return decode_cost.DecodeGraph("bc", model, {"blocks": np.zeros((1, 2, 3, 4), np.int32)})


@pytest.mark.parametrize("layout", ["nchw", "tokens"])
def test_bc_decode_counts_one_op_per_decoded_value(layout):
    """bc5 on 2x3 blocks: 16 texels x 2 channels per block = 192 fp16 values, one MAC (2 FLOPs) and 2 bytes each."""
    counts = decode_cost.graph_counts([bc_decode_graph(layout)])
    assert counts == {"flops": 2 * 192, "bytes_moved": 2 * 192, "bytes_compulsory": 2 * 192 + 4 * 24}


def test_attention_counts_the_decomposed_ops_by_hand():
    """ONNX Attention, Q [2, 5, 2*3] and K [2, 7, 2*3], V [2, 7, 2*4], 2 heads, additive mask: per head and image,
    q * scale (5*3 Mul), Q K^T (5*7*3 MACs), the mask Add (5*7), Softmax (5*7 x (Exp 32 + Div 4) as onnx-tool weighs
    them) and scores x V (5*7*4 MACs); bytes moved: the output [2, 5, 8] in float32."""
    b, tq, tk, heads, hd, hd_v = 2, 5, 7, 2, 3, 4
    shapes = {"q": [b, tq, heads * hd], "k": [b, tk, heads * hd], "v": [b, tk, heads * hd_v],
              "mask": [b, heads, tq, tk]}
    node = helper.make_node("Attention", list(shapes), ["out"], q_num_heads=heads, kv_num_heads=heads, scale=0.5)
    graph = helper.make_graph([node], "att", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
                                              for n, s in shapes.items()],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal(s).astype(np.float32)[:1] for n, s in shapes.items()}
    counts = decode_cost.graph_counts([decode_cost.DecodeGraph("att", model, feeds)])
    per_head = tq * hd + tq * tk * hd + tq * tk + tq * tk * 36 + tq * tk * hd_v
    assert counts["flops"] == 2 * heads * per_head  # one image: the feeds' batch
    assert counts["bytes_moved"] == 4 * tq * heads * hd_v
    model.graph.node[0].attribute.append(helper.make_attribute("is_causal", 1))  # not the ops counted: refused
    with pytest.raises(NtcError, match="cannot count decode graph 'att'.*causal"):
        decode_cost.graph_counts([decode_cost.DecodeGraph("att", model, feeds)])


def test_native_attention_lowering_counts_as_the_decomposed_one(vq):
    """The vq decoder's window attention exported as ONNX Attention counts the FLOPs of its MatMul-Softmax-MatMul
    export (the ops are the same; only the fused graph writes fewer intermediate bytes)."""
    from ntc_export.backend.onnx.export import to_onnx_fp32

    module, (graph,) = vq
    native = decode_cost.DecodeGraph("decoder", to_onnx_fp32(module, attention="native"), graph.feeds)
    assert "Attention" in decode_cost.op_flops(native)
    assert decode_cost.graph_counts([native])["flops"] == decode_cost.graph_counts([graph])["flops"]
    np.testing.assert_allclose(run_ort(native), run_ort(graph), atol=1e-4)


def test_stored_bytes_pack_four_bit_values():
    import ml_dtypes

    assert decode_cost.stored_bytes(np.zeros((1, 5), ml_dtypes.int4)) == 3
    assert decode_cost.stored_bytes(np.zeros((1, 5), ml_dtypes.float8_e4m3fn)) == 5
    assert decode_cost.stored_bytes(np.zeros((1, 5), np.float16)) == 10


def test_uncountable_op_is_refused():
    graph = bc_decode_graph("tokens")
    graph.model.graph.node[0].op_type = "TexelMystery"
    with pytest.raises(NtcError, match="cannot count ntc::TexelMystery"):
        decode_cost.graph_counts([graph])


# ---- (b) trained compressors' decode routes -------------------------------------------------------------------------

def test_vq_route_is_its_decoder_and_runs(vq):
    module, graphs = vq
    assert [g.name for g in graphs] == ["decoder"]  # the encoder graph is encode side
    with torch.no_grad():
        want = module(torch.from_numpy(graphs[0].feeds["indices"])).numpy()
    np.testing.assert_allclose(run_ort(graphs[0]), want, rtol=1e-4, atol=1e-4)


def test_hyperprior_route_runs_hyper_synthesis_then_decoder(hyperprior):
    module, graphs = hyperprior
    assert [g.name for g in graphs] == ["hyper_synthesis", "decoder"]
    hyper, decoder = graphs
    with torch.no_grad():
        scales = module.h_s(torch.from_numpy(hyper.feeds["z_hat"])).numpy()
        tokens = module(torch.from_numpy(decoder.feeds["latents"])).numpy()
    np.testing.assert_allclose(run_ort(hyper), scales, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(run_ort(decoder), tokens, rtol=1e-4, atol=1e-4)
    timings = decode_cost.graph_timings(graphs, budget_s=0.01)
    assert set(timings) == {"t1_b1", "t1_b16", "tall_b1", "tall_b16"} and min(timings.values()) > 0


def test_routes_need_a_compressor_and_one_image(vq):
    with pytest.raises(NtcError, match="not a token compressor"):
        decode_cost.compressor_graphs(load(ZOO_DIR / "mlp2x_gelu.pt"), np.zeros((1, 4, 4, 384), np.float32))
    with pytest.raises(NtcError, match="one image"):
        decode_cost.compressor_graphs(vq[0], np.zeros((2, *GRID, vq[0].input_dim), np.float32))


# ---- (c) roofline ---------------------------------------------------------------------------------------------------

def test_roofline_covers_every_target_and_derives_dense_fp16():
    from ntc_export.backend.trt.targets import TARGETS

    assert set(roofline.ROOFS) == set(TARGETS)
    assert roofline.roof("gb10").fp16_tflops == 1000 / 2 / 4  # FP4 sparse -> dense -> FP16
    assert roofline.roof("jetson-orin").fp16_tflops == 170 / 2 / 2  # INT8 sparse -> dense -> FP16
    assert roofline.roof("datacenter-hopper").fp16_tflops == 1979 / 2
    assert roofline.roof("rtx-ada").fp16_tflops == 165.2


def test_roofline_bound_by_hand():
    """rtx-ada (165.2 TFLOPS, 1008 GB/s): 165.2 GFLOP take 1 ms, 504 MB take 0.5 ms; the larger term is the bound."""
    compute = roofline.bound_ms("rtx-ada", 165.2e9, 504e6)
    assert compute == {"bound_ms": pytest.approx(1.0), "limit": "compute", "board": "GeForce RTX 4090"}
    memory = roofline.bound_ms("rtx-ada", 16.52e9, 2016e6)
    assert memory["bound_ms"] == pytest.approx(2.0) and memory["limit"] == "memory"
    with pytest.raises(NtcError, match="unknown target"):
        roofline.bound_ms("rtx-kepler", 1, 1)


# ---- (d) PCA decode graphs and the row's cost -----------------------------------------------------------------------

def pca_codecs():
    rng = np.random.default_rng(1)
    train = (rng.standard_normal((6, 8, 12, 16)) * np.geomspace(3, 0.1, 16)).astype(np.float32)
    tokens = (rng.standard_normal((1, 5, 7, 16)) * np.geomspace(3, 0.1, 16)).astype(np.float32)  # odd sides: padded
    cells = pca_reference.to_cells(train, 2)
    return tokens, [pca_reference.for_rate(train.reshape(6, -1, 16), 4.0),
                    pca_reference.CellPcaCodec(pca_reference.for_rate(cells, 4.0), 2)]


@pytest.mark.parametrize("which", [0, 1], ids=["pca", "cell_pca"])
def test_pca_decode_graph_equals_decode(which):
    tokens, codecs = pca_codecs()
    codec = codecs[which]
    (graph,) = codec.decode_graphs(tokens)
    want = codec.decode(codec.encode(tokens))
    assert want.shape == (1, 35, 16)
    np.testing.assert_allclose(run_ort(graph), want, rtol=1e-5, atol=1e-5)


def test_route_cost_adds_the_host_step_per_image_and_bounds_compulsory_bytes():
    tokens, codecs = pca_codecs()
    graphs = codecs[1].decode_graphs(tokens)
    plain = decode_cost.route_cost(graphs)
    hosted = decode_cost.route_cost(graphs, host_ms=2.0)  # the same route: counted and timed once
    assert plain["graphs"] == [f"{codecs[1].arch} dequantize"] and plain["counted_by"].startswith("onnx-tool ")
    assert {k: hosted["p50_ms"][k] - plain["p50_ms"][k] for k in plain["p50_ms"]} == pytest.approx(
        {"t1_b1": 2.0, "tall_b1": 2.0, "t1_b16": 32.0, "tall_b16": 32.0})
    assert hosted["host_ms"] == 2.0 and "host_ms" not in plain
    assert set(plain["bound_ms"]) == set(roofline.ROOFS)
    assert plain["bound_ms"]["rtx-ada"] == roofline.bound_ms("rtx-ada", plain["flops"], plain["bytes_compulsory"])
