"""Bring your own model: a module defined here (not in our registry), with its own layer types and a call to
ntc_export.ops.bc_decode, saved with torch.export.save, goes through the main job; unsafe archives are refused."""

import io
import json
import zipfile

import numpy as np
import pytest
import torch
import torch.nn as nn
from ntc_export import ops
from ntc_export.cli import main
from pinned_photos import pinned_tokens

HELD_OUT = 8  # pinned val crops: the set other tests make too (cached for the session)


class ScaledRMSNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class GatedTokenProjector(nn.Module):
    """Tokens [B, N, 384] -> [B, N, 256]; a per-channel gain stored as a BC4 texture, decoded in the graph."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.norm = ScaledRMSNorm(384)
        self.up = nn.Linear(384, 512)
        self.down = nn.Linear(256, 256)
        for p in (*self.up.parameters(), *self.down.parameters()):
            nn.init.normal_(p, std=0.05, generator=g)
        # 24 BC4 blocks of 16 texels = 384 gains; any 64-bit pattern is a valid BC4 block
        self.register_buffer("gain_blocks", torch.randint(-2**31, 2**31 - 1, (1, 1, 24, 2), dtype=torch.int32,
                                                          generator=g))

    def forward(self, tokens):
        gain = ops.bc_decode(self.gain_blocks, "bc4", "tokens", "float32")[0, :, 0]
        a, b = self.up(self.norm(tokens) * (0.5 + gain)).chunk(2, dim=-1)
        return self.down(a * torch.sigmoid(b))


def save_program(path, extra=None):
    module = GatedTokenProjector().eval()
    example = torch.randn(2, 256, 384)
    dims = {"tokens": {0: torch.export.Dim("batch", min=1, max=64), 1: torch.export.Dim("tokens", min=4, max=4096)}}
    program = torch.export.export(module, (example,), dynamic_shapes=dims)
    torch.export.save(program, str(path), extra_files=extra or {})
    return module


def test_bc_decode_op_traces_into_the_program(tmp_path):
    module = save_program(tmp_path / "m.pt2")
    program = torch.export.load(str(tmp_path / "m.pt2"))
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert "ntc.bc_decode.default" in targets
    x = torch.randn(3, 64, 384)
    torch.testing.assert_close(program.module()(x), module(x), rtol=0, atol=0)


def test_main_job_runs_a_torch_export_program(tmp_path):
    save_program(tmp_path / "byo.pt2", {"ntc-export.json": json.dumps({"output_names": ["embeddings"]})})
    out = tmp_path / "out"
    pinned_tokens("val", HELD_OUT).save(tmp_path / "val.npz")  # the same held-out tokens on every machine
    assert main([str(tmp_path / "byo.pt2"), "--data", str(tmp_path / "val.npz"), "--precision", "fp32", "--precision",
                 "fp16", "--target", "rtx-ada", "--out", str(out), "-q"]) == 0
    report = json.loads((out / "report.json").read_text())
    rows = {r["precision"]: r for r in report["records"] if r["backend"] == "onnxruntime"}
    assert rows["fp32"]["output"] == "embeddings" and rows["fp32"]["rel_l2"] <= 1e-5, rows["fp32"]
    assert rows["fp16"]["cosine"] >= 0.9995, rows["fp16"]
    import onnx

    graph = onnx.load(str(out / "byo" / "onnx" / "decomposed" / "model.fp32.onnx")).graph
    assert [n.op_type for n in graph.node if n.domain == "ntc"] == ["BcDecode"]
    engine = next(e for e in report["engines"] if e["kind"] == "engine")
    assert engine["target"] == "rtx-ada" and (out / "engines" / engine["engine"]).stat().st_size == engine["engine_bytes"] > 0
    assert engine["profiles"]["tokens"][0][0] == 1  # the program's dynamic batch became a profile range
    layers = {row["layer"] for row in report["drift"]["byo"]["fp16"]}
    assert {"norm", "up", "down"} <= layers, layers  # per-layer drift found the user's own modules
    assert (out / "report" / "index.html").exists()


def _plant(path, member_suffix: str, payload: bytes) -> None:
    """Rewrite the archive with one member's bytes replaced."""
    with zipfile.ZipFile(path) as z:
        items = [(i, z.read(i.filename)) for i in z.infolist()]
    with zipfile.ZipFile(path, "w") as z:
        for info, data in items:
            z.writestr(info, payload if info.filename.endswith(member_suffix) else data)


class _Marker:
    def __reduce__(self):
        import os

        return (os.system, ("touch " + str(_Marker.path),))


def test_a_planted_pickle_is_refused_before_loading(tmp_path, capsys):
    save_program(tmp_path / "evil.pt2")
    _Marker.path = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"args": _Marker()}, buf)  # what torch.export.load would unpickle with weights_only=False
    _plant(tmp_path / "evil.pt2", "data/sample_inputs/model.pt", buf.getvalue())
    assert main(["export", str(tmp_path / "evil.pt2"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "refuses 'data/sample_inputs/model.pt'" in err and len(err.strip().splitlines()) == 1, err
    assert not _Marker.path.exists()
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("member,why", [("data/aotinductor/model/model.so", "refuses member"),
                                        ("data/weights/model.pt", "refuses member")])
def test_native_code_and_legacy_pickles_are_refused(tmp_path, capsys, member, why):
    save_program(tmp_path / "m.pt2")
    with zipfile.ZipFile(tmp_path / "m.pt2", "a") as z:
        root = z.namelist()[0].split("/", 1)[0]
        z.writestr(f"{root}/{member}", b"\x7fELF")
    assert main(["export", str(tmp_path / "m.pt2"), "--out", str(tmp_path / "o")]) == 2
    assert why in capsys.readouterr().err


def test_tokens_of_the_corpus_feed_the_program(tmp_path):
    save_program(tmp_path / "m.pt2")
    from ntc_export.models import load

    model = load(tmp_path / "m.pt2")
    tokens = pinned_tokens("val", HELD_OUT).patch_tokens[:2].astype(np.float32)
    out = model(torch.from_numpy(tokens))
    assert out.shape == (2, 256, 256) and model.input_names == ["tokens"] and model.output_names == ["tokens_out"]
