"""WindowAttention: PyTorch module vs a naive Swin loop, and its three ONNX lowerings through ONNX Runtime."""

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from ntc_export.backend.onnx import export
from ntc_export.backend.onnxrt.runner import ort_session_options
from ntc_export.models.grid import grid_pair, grid_tokens
from ntc_export.models.blocks import SwinBlock, WindowAttention
from ntc_export.ops.ort_registry import register_custom_ops
from ntc_export.ops.window_attention import (
    export_context,
    finalize,
    mark_trt_decomposable,
    ort_op,
    swap_plugins_for_validation,
)
from ntc_export.ops.window_attention.lowering import TRT_DECOMPOSABLE_KEY
from ntc_export.util.errors import NtcError

HEADS = 2
# (batch, (h, w)): 16 divides window 8 but not 7; 37 and 23 need padding for both; 5 x 3 is less than one window
GRIDS = ((2, (16, 16)), (1, (37, 23)), (1, (5, 3)))


class GridAttention(torch.nn.Module):
    """Token-model shape around a block: tokens [B, h, w, C] on any grid (h and w stay dynamic in the export)."""

    input_names = ["tokens"]
    output_names = ["tokens_out"]

    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, tokens):
        x, h, w = grid_tokens(tokens)
        return self.block(x, h, w)

    def example_inputs(self, batch: int = 2, grid=16):
        dim = self.block.attn.dim if isinstance(self.block, SwinBlock) else self.block.dim
        return (torch.randn(batch, *grid_pair(grid), dim),)

    def dynamic_axes(self):
        return {"tokens": {0: "batch", 1: "grid_h", 2: "grid_w"}, "tokens_out": {0: "batch", 1: "tokens"}}


def naive_window_attention(attn: WindowAttention, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Swin (shifted) window attention by explicit loops over query tokens, in float64.

    A token at (y, x) sits, after the cyclic shift, at ((y - s) mod Hp, (x - s) mod Wp) of the padded grid; it
    attends to real tokens in the same shifted window whose wrap-around status matches its own on each axis."""
    win, s, nh, hd = attn.window, attn.shift, attn.heads, attn.head_dim
    hp, wp = math.ceil(h / win) * win, math.ceil(w / win) * win
    qkv = (x.double() @ attn.qkv.weight.double().T + attn.qkv.bias.double())
    q, k, v = qkv.split(attn.dim, dim=-1)
    table = attn.relative_position_bias_table.double()
    out = torch.zeros(x.shape[0], h * w, attn.dim, dtype=torch.float64)

    def place(y, xx):
        ry, rx = (y - s) % hp, (xx - s) % wp
        return ry, rx, (ry // win, rx // win), (ry + s >= hp, rx + s >= wp)

    for b in range(x.shape[0]):
        for qi in range(h * w):
            qy, qx, qwin, qwrap = place(qi // w, qi % w)
            keys, bias_rows = [], []
            for ki in range(h * w):
                ky, kx, kwin, kwrap = place(ki // w, ki % w)
                if kwin == qwin and kwrap == qwrap:
                    keys.append(ki)
                    dy, dx = qy % win - ky % win + win - 1, qx % win - kx % win + win - 1
                    bias_rows.append(dy * (2 * win - 1) + dx)
            for head in range(nh):
                sl = slice(head * hd, (head + 1) * hd)
                scores = (q[b, qi, sl] @ k[b, keys, sl].T) * hd ** -0.5 + table[bias_rows, head]
                out[b, qi, sl] = torch.softmax(scores, dim=0) @ v[b, keys, sl]
    return out @ attn.proj.weight.double().T + attn.proj.bias.double()


@pytest.mark.parametrize("h,w,window,shift", [(5, 6, 4, 2), (8, 6, 4, 2), (8, 8, 4, 0), (7, 9, 3, 1), (3, 2, 4, 2)])
def test_module_matches_naive_swin_loop(h, w, window, shift):
    torch.manual_seed(h * 100 + w * 10 + shift)
    attn = WindowAttention(8, 2, window, shift).eval()
    with torch.no_grad():
        attn.relative_position_bias_table.normal_(0, 1.0)  # a bias large enough to matter
        x = torch.randn(2, h * w, 8)
        got = attn(x, h, w).double()
    ref = naive_window_attention(attn, x, h, w)
    assert torch.allclose(got, ref, atol=2e-6, rtol=0), float((got - ref).abs().max())


class FixedGrid(torch.nn.Module):
    """A WindowAttention on a fixed h x w grid, for torch.export."""

    def __init__(self, attn: WindowAttention, h: int, w: int):
        super().__init__()
        self.attn, self.h, self.w = attn, h, w

    def forward(self, x):
        return self.attn(x, self.h, self.w)


@pytest.mark.parametrize("h,w", [(5, 6), (8, 6), (6, 8)])
def test_torch_export_crop_matches_naive_swin_loop(h, w):
    """Under torch.export (the default ONNX exporter) the crop back from the padded grid is a gather, not the eager
    slice: the exported program against the naive loop, on grids padded along one or both axes."""
    torch.manual_seed(h * 10 + w)
    attn = WindowAttention(8, 2, 4, 2).eval()
    with torch.no_grad():
        attn.relative_position_bias_table.normal_(0, 1.0)
    x = torch.randn(2, h * w, 8)
    program = torch.export.export(FixedGrid(attn, h, w), (x,))
    with torch.no_grad():
        got = program.module()(x).double()
    ref = naive_window_attention(attn, x, h, w)
    assert torch.allclose(got, ref, atol=2e-6, rtol=0), float((got - ref).abs().max())


def _ort_session(model: onnx.ModelProto):
    so = ort_session_options(threads=1)
    register_custom_ops(so)
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _run(session, x: torch.Tensor, dtype) -> np.ndarray:
    return session.run(None, {"tokens": x.numpy().astype(dtype)})[0].astype(np.float64)


@pytest.fixture(scope="module")
def grids():
    g = torch.Generator().manual_seed(7)
    return {grid: torch.randn(b, *grid, 128, generator=g) for b, grid in GRIDS}


@pytest.mark.parametrize("window", [7, 8])
@pytest.mark.parametrize("head_dim", [32, 64])
@pytest.mark.parametrize("shifted", [False, True])
def test_lowerings_match_pytorch_through_ort(window, head_dim, shifted, grids):
    torch.manual_seed(window * 10 + head_dim + shifted)
    dim = HEADS * head_dim
    module = GridAttention(WindowAttention(dim, HEADS, window, window // 2 if shifted else 0)).eval()
    with torch.no_grad():
        module.block.relative_position_bias_table.normal_(0, 0.5)
    inputs = {side: x[..., :dim] for side, x in grids.items()}
    with torch.no_grad():
        refs = {side: module(x).double().numpy() for side, x in inputs.items()}
    for mode in ("decomposed", "plugin", "native"):  # one graph (torch.export) for every grid
        fp32 = export.to_onnx_fp32(module, attention=mode)
        fp16 = export.to_fp16(fp32)
        runs = [("fp32", ort_op.prepare(fp32), np.float32), ("fp16", ort_op.prepare(fp16), np.float16)]
        if mode == "plugin":  # the plugin graph also through its standard-op decomposition
            runs.append(("fp32-swapped", swap_plugins_for_validation(fp32), np.float32))
        for label, model, dtype in runs:
            session = _ort_session(model)
            for side, x in inputs.items():
                err = np.abs(_run(session, x, dtype) - refs[side]).max()
                scale = np.abs(refs[side]).max()
                bound = 1e-5 if dtype == np.float32 else 2e-3 * scale
                assert err <= bound, f"{mode} {label} grid {side}: max abs {err:.3g} > {bound:.3g}"


def test_plugin_node_follows_contract():
    module = GridAttention(WindowAttention(64, 2, 7, 3)).eval()
    model = export.to_onnx_fp32(module, attention="plugin")
    nodes = [n for n in model.graph.node if n.op_type == "WindowAttention"]
    assert len(nodes) == 1 and nodes[0].domain == "ntc"
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs == {"heads": 2, "window": 7, "shift": 3, "scale": pytest.approx(32 ** -0.5),
                     "plugin_version": b"1"}
    assert not any(n.op_type in ("Softmax", "Attention") for n in model.graph.node)
    shapes = {vi.name: [d.dim_value or d.dim_param for d in vi.type.tensor_type.shape.dim]
              for vi in model.graph.value_info}
    shapes.update({i.name: list(i.dims) for i in model.graph.initializer})
    assert shapes[nodes[0].input[3]] == [169, 2]  # the plugin gathers from the raw table itself
    # run-time shapes of the node's inputs: grid 10x10 pads to 14x14 = 4 windows per image, batch 3
    names = [n for n in nodes[0].input if n not in {i.name for i in model.graph.initializer}]
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    session = _ort_session(ort_op.prepare(model))
    outs = dict(zip([o.name for o in session.get_outputs()],
                    session.run(None, {"tokens": np.random.rand(3, 10, 10, 64).astype(np.float32)})))
    assert [outs[n].shape for n in names] == [(12, 2, 49, 32)] * 3 + [(4, 49, 49)]
    assert set(np.unique(outs[names[3]])) == {0.0, -10000.0}


def test_contract_numpy_op_against_module():
    """The NumPy contract implementation (ORT's plugin op) on the module's own partitioned inputs."""
    torch.manual_seed(3)
    attn = WindowAttention(32, 2, 4, 2).eval()
    with torch.no_grad():
        attn.relative_position_bias_table.normal_(0, 1.0)
    captured = {}

    def spy(q, k, v, mask):
        captured.update(q=attn.split_heads(q), k=attn.split_heads(k), v=attn.split_heads(v), mask=mask)
        out = original(q, k, v, mask)
        captured["out"] = out
        return out

    original, attn._attend = attn._attend, spy
    with torch.no_grad():
        attn(torch.randn(3, 6 * 7, 32), 6, 7)
    c = {key: t.numpy() for key, t in captured.items()}
    got = ort_op.window_attention(c["q"], c["k"], c["v"], attn.relative_position_bias_table.detach().numpy(),
                                  c["mask"], 2, 4, attn.scale)
    assert c["mask"].shape == (4, 16, 16) and got.shape == c["out"].shape == (12, 16, 32)
    assert np.abs(got - c["out"]).max() <= 1e-5  # every row, padded queries included (none is fully masked)


def test_native_lowering_is_opset23_attention():
    module = GridAttention(WindowAttention(64, 2, 8, 4)).eval()
    model = export.to_onnx_fp32(module, attention="native")
    onnx.checker.check_model(model, full_check=True)
    assert {(o.domain or "ai.onnx"): o.version for o in model.opset_import} == {"ai.onnx": 23}
    node = next(n for n in model.graph.node if n.op_type == "Attention")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["q_num_heads"] == attrs["kv_num_heads"] == 2 and attrs["scale"] == pytest.approx(32 ** -0.5)
    assert {p.key: p.value for p in model.metadata_props}[TRT_DECOMPOSABLE_KEY] == "1"
    marked = mark_trt_decomposable(model)
    assert any(a.name == "TRT_decomposable" and a.i == 1 for n in marked.graph.node if n.op_type == "Attention"
               for a in n.attribute)
    with pytest.raises(onnx.checker.ValidationError, match="TRT_decomposable"):
        onnx.checker.check_model(marked)  # why the attribute is kept out of checked artifacts


def test_swin_block_exports_with_dynamic_grid():
    torch.manual_seed(0)
    block = GridAttention(SwinBlock(32, 2, 4, shift=2, mlp_ratio=2)).eval()
    model = export.to_onnx_fp32(block, attention="native")
    session = _ort_session(model)
    for b, (h, w) in ((1, (8, 8)), (2, (11, 6)), (1, (1, 1))):
        x = torch.randn(b, h, w, 32)
        with torch.no_grad():
            ref = block(x).numpy()
        assert np.abs(_run(session, x, np.float32) - ref).max() <= 1e-5


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(NtcError, match="multiple of heads"):
        WindowAttention(30, 4, 7)
    with pytest.raises(NtcError, match="shift"):
        WindowAttention(32, 2, 7, shift=7)
    with pytest.raises(NtcError, match="unknown attention lowering"):
        with export_context("fused"):
            pass
    with pytest.raises(NtcError, match="unknown attention lowering"):
        finalize(onnx.ModelProto(), "fused")


def test_outside_export_the_module_is_plain_pytorch():
    attn = WindowAttention(16, 2, 4, 2).eval()
    x = torch.randn(1, 25, 16)
    with torch.no_grad():
        ref = attn(x, 5, 5)
        with export_context("plugin"):
            inside = attn(x, 5, 5)  # the lowering applies only while torch.onnx.export traces
    assert torch.equal(ref, inside)


def test_tensorrt_rtx_builds_native_lowering_fp16_aot():
    trt = pytest.importorskip("tensorrt_rtx")
    module = GridAttention(WindowAttention(64, 2, 7, 3)).eval()
    fp16 = export.to_fp16(export.to_onnx_fp32(module, attention="native"))
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT-RTX networks are always strongly typed
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(fp16.SerializeToString()), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    layer_types = {str(network.get_layer(i).type) for i in range(network.num_layers)}
    assert any("ATTENTION" in t for t in layer_types)  # the native attention layer, not a decomposition
    config = builder.create_builder_config()
    targets = [trt.ComputeCapability.SM86, trt.ComputeCapability.SM89, trt.ComputeCapability.SM120]
    config.num_compute_capabilities = len(targets)
    for i, cc in enumerate(targets):
        config.set_compute_capability(cc, i)
    profile = builder.create_optimization_profile()
    profile.set_shape("tokens", (1, 1, 1, 64), (1, 16, 16, 64), (2, 37, 46, 64))  # any grid up to 37x46
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    assert engine is not None and engine.nbytes > 0
