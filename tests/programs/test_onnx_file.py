"""An ONNX file as MODEL: the main job skips export and validates the artifacts it makes against the file's own
ONNX Runtime fp32 outputs, or against --golden outputs; files with ops no runtime of ours has are refused."""

import json

import numpy as np
import onnx
import pytest
import torch
from ntc_export.backend.onnx.export import export_model
from ntc_export.cli import main
from ntc_export.models import build
from pinned_photos import pinned_tokens

SAMPLES = 8


@pytest.fixture(scope="module")
def user_onnx(tmp_path_factory):
    """A projector exported elsewhere (here: ours, with random weights), the held-out data (pinned photographs, the
    same on every machine) written as val.npz, and PyTorch's outputs on it."""
    root = tmp_path_factory.mktemp("onnx_file")
    torch.manual_seed(0)
    module = build("mlp2x_gelu", dict(output_dim=256, num_classes=0)).eval()
    path = export_model(module, root, precisions=("fp32",), name="user")["fp32"]
    held_out = pinned_tokens("val", SAMPLES)
    held_out.save(root / "val.npz")
    tokens = held_out.patch_tokens.astype(np.float32)
    with torch.no_grad():
        golden = module(torch.from_numpy(tokens)).numpy()
    return root, path, golden


def _run(root, path, out, *extra):
    return main([str(path), "--data", str(root / "val.npz"), "--precision", "fp32", "--precision", "fp16", "--no-build",
                 "--max-samples", str(SAMPLES), "--out", str(out), "-q", *extra])


def _rows(out):
    report = json.loads((out / "report.json").read_text())
    return report, {r["precision"]: r for r in report["records"] if r["backend"] == "onnxruntime"}


def test_main_job_validates_against_the_files_own_fp32(user_onnx):
    root, path, _ = user_onnx
    assert _run(root, path, root / "own") == 0
    report, rows = _rows(root / "own")
    assert rows["fp32"]["rel_l2"] == 0.0  # the same file in the same runtime
    assert rows["fp16"]["cosine"] >= 0.9995 and rows["fp16"]["rel_l2"] > 0
    assert report["models"]["user.fp32"]["config"]["golden"] == "onnxruntime fp32 of the same file"


def test_golden_outputs_replace_the_reference(user_onnx):
    root, path, golden = user_onnx
    np.savez(root / "golden.npz", tokens_out=golden)
    assert _run(root, path, root / "golden", "--golden", str(root / "golden.npz")) == 0
    report, rows = _rows(root / "golden")
    assert 0 < rows["fp32"]["rel_l2"] <= 1e-5  # ONNX Runtime vs PyTorch now
    assert report["models"]["user.fp32"]["config"]["golden"] == "golden.npz (--golden)"
    np.savez(root / "wrong.npz", tokens_out=golden * 1.01)
    assert _run(root, path, root / "wrong", "--golden", str(root / "wrong.npz")) == 1  # a 1% error misses rel L2 1e-5


def test_unknown_custom_op_is_refused(user_onnx, tmp_path, capsys):
    root, path, _ = user_onnx
    model = onnx.load(str(path))
    model.graph.node[0].domain = "acme.ops"
    model.opset_import.add(domain="acme.ops", version=1)
    onnx.save(model, str(tmp_path / "odd.onnx"))
    assert _run(root, tmp_path / "odd.onnx", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert "unknown custom op acme.ops::" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
