"""A user module calling ntc_export.ops.window_attention (the torch.library op) exports through torch.export with
one ntc::WindowAttention node per call, matches our own WindowAttention module bit for bit in PyTorch, and goes
through the main job: ONNX Runtime fidelity and a TensorRT-RTX engine with the plugin."""

import json

import onnx
import pytest
import torch
import torch.nn as nn
from ntc_export import ops
from ntc_export.cli import main
from ntc_export.models.blocks import WindowAttention, window_mask

GRID, WINDOW, HEADS, DIM = 16, 8, 4, 384


class WindowedMixer(nn.Module):
    """Tokens [B, 256, 384] on a fixed 16x16 grid -> the same shape: one Swin window attention (shift 4) + residual,
    the attention core through the library op."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.attn = WindowAttention(DIM, HEADS, WINDOW, shift=WINDOW // 2)
        self.register_buffer("mask", window_mask(GRID, GRID, WINDOW, WINDOW // 2))

    def forward(self, tokens):
        a = self.attn
        b, c = tokens.shape[0], tokens.shape[-1]
        qkv = torch.roll(a.qkv(tokens).reshape(b, GRID, GRID, 3 * c), shifts=(-a.shift, -a.shift), dims=(1, 2))
        windows = qkv.reshape(b, 2, WINDOW, 2, WINDOW, 3 * c).permute(0, 1, 3, 2, 4, 5).reshape(-1, WINDOW ** 2, 3 * c)
        q, k, v = (a.split_heads(t) for t in windows.chunk(3, dim=-1))
        out = ops.window_attention(q, k, v, a.relative_position_bias_table, self.mask, HEADS, WINDOW, a.shift,
                                   float(a.scale))
        out = out.reshape(b, 2, 2, WINDOW, WINDOW, c).permute(0, 1, 3, 2, 4, 5).reshape(b, GRID, GRID, c)
        out = torch.roll(out, shifts=(a.shift, a.shift), dims=(1, 2)).reshape(b, -1, c)
        return tokens + a.proj(out)


def test_the_op_is_our_window_attention():
    module = WindowedMixer().eval()
    x = torch.randn(3, GRID * GRID, DIM)
    with torch.no_grad():
        torch.testing.assert_close(module(x), x + module.attn(x, GRID, GRID), rtol=1e-5, atol=1e-5)


def test_bad_fields_are_one_line_errors():
    q = torch.zeros(4, HEADS, WINDOW ** 2, DIM // HEADS)
    from ntc_export.util.errors import NtcError

    with pytest.raises(NtcError, match="shift"):
        ops.window_attention(q, q, q, torch.zeros(225, HEADS), torch.zeros(4, 64, 64), HEADS, WINDOW, WINDOW, 0.1)


def test_main_job_runs_a_program_using_the_op(tmp_path):
    module = WindowedMixer().eval()
    program = torch.export.export(module, (torch.randn(2, GRID * GRID, DIM),),
                                  dynamic_shapes={"tokens": {0: torch.export.Dim("batch", min=1, max=64)}})
    assert "ntc.window_attention.default" in {str(n.target) for n in program.graph.nodes}
    torch.export.save(program, str(tmp_path / "mixer.pt2"))
    out = tmp_path / "out"
    assert main([str(tmp_path / "mixer.pt2"), "--precision", "fp32", "--precision", "fp16", "--target", "rtx-ada",
                 "--max-samples", "8", "--out", str(out), "-q"]) == 0
    report = json.loads((out / "report.json").read_text())
    rows = {r["precision"]: r for r in report["records"] if r["backend"] == "onnxruntime"}
    assert rows["fp32"]["rel_l2"] <= 1e-5 and rows["fp16"]["cosine"] >= 0.9995, rows
    for precision in ("fp32", "fp16"):
        graph = onnx.load(str(out / "mixer" / "onnx" / "decomposed" / f"model.{precision}.onnx")).graph
        nodes = [n for n in graph.node if n.domain == "ntc"]
        assert [n.op_type for n in nodes] == ["WindowAttention"], precision
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
        assert (attrs["heads"], attrs["window"], attrs["shift"]) == (HEADS, WINDOW, WINDOW // 2)
    engine = next(e for e in report["engines"] if e["kind"] == "engine")
    assert (out / "engines" / engine["engine"]).stat().st_size == engine["engine_bytes"] > 0
    assert any(p["op"].endswith("WindowAttention") for p in engine["plugins"]), engine["plugins"]
