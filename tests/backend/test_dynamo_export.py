"""Our registry models through the torch.export-based exporter (the default): patch tokens enter as [B, h, w, D]
with the grid's height and width two dynamic axes, outputs equal PyTorch at every grid (non-square included), no
metadata narrows the grid, the legacy exporter agrees, and shapes the exporter cannot express are refused clearly."""

import numpy as np
import onnx
import pytest
import torch
from ntc_export.backend.onnx.export import export_model, to_onnx_fp32
from ntc_export.backend.onnxrt.runner import OrtRunner
from ntc_export.models import build
from ntc_export.util.errors import NtcError


def _rel_l2(ref: np.ndarray, got: np.ndarray) -> float:
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


@pytest.fixture(scope="module")
def projector():
    torch.manual_seed(0)
    return build("pixel_shuffle", {"input_dim": 32, "output_dim": 48, "num_classes": 3}).eval()


def test_token_input_keeps_its_interface_and_grid_stays_dynamic(projector, tmp_path):
    paths = export_model(projector, tmp_path, ("fp32", "fp16"), exporter="dynamo")
    model = onnx.load(str(paths["fp32"]))
    (tokens,) = model.graph.input
    assert tokens.name == "tokens"
    assert [d.dim_param or d.dim_value for d in tokens.type.tensor_type.shape.dim] == ["batch", "grid_h", "grid_w",
                                                                                       32]
    assert [o.name for o in model.graph.output] == ["tokens_out", "logits"]
    assert not any("grid" in p.key for p in model.metadata_props)  # nothing narrows the grid
    fp32, fp16 = OrtRunner(paths["fp32"]), OrtRunner(paths["fp16"])
    for batch, (h, w) in ((1, (2, 2)), (3, (10, 4)), (2, (26, 46))):  # one graph for every even grid, batch 1 too
        x = torch.randn(batch, h, w, 32, generator=torch.Generator().manual_seed(h * w))
        with torch.no_grad():
            want = [t.numpy() for t in projector(x)]
        got = fp32.run({"tokens": x.numpy()})
        half = fp16.run({"tokens": x.numpy().astype(np.float16)})
        for name, ref in zip(("tokens_out", "logits"), want):
            assert got[name].shape == ref.shape
            assert _rel_l2(ref, got[name]) <= 1e-5, (name, h, w)
            assert _rel_l2(ref, half[name].astype(np.float32)) <= 5e-3, (name, h, w)


def test_legacy_exporter_gives_the_same_outputs(projector, tmp_path):
    x = torch.randn(2, 8, 6, 32, generator=torch.Generator().manual_seed(1)).numpy()
    outs = {}
    for exporter in ("dynamo", "torchscript"):
        path = export_model(projector, tmp_path / exporter, ("fp32",), exporter=exporter)["fp32"]
        outs[exporter] = OrtRunner(path).run({"tokens": x})["tokens_out"]
    assert _rel_l2(outs["torchscript"], outs["dynamo"]) <= 1e-6


class _FixedAxis(torch.nn.Module):
    """Declares its token axis dynamic but ignores the grid it is asked for."""

    input_names, output_names = ["tokens"], ["out"]

    def forward(self, tokens):
        return tokens * 2

    def example_inputs(self, batch: int = 2, grid=16):
        return (torch.randn(batch, 4, 4, 8),)

    def dynamic_axes(self):
        return {"tokens": {0: "batch", 1: "grid_h", 2: "grid_w"}}


def test_unsupported_shapes_are_refused_in_one_line():
    with pytest.raises(NtcError, match="declared dynamic but does not grow with the token grid"):
        to_onnx_fp32(_FixedAxis())
    with pytest.raises(NtcError, match="unknown exporter"):
        to_onnx_fp32(_FixedAxis(), exporter="jit")
    with pytest.raises(NtcError, match="exporter='torchscript'"):
        to_onnx_fp32(torch.nn.Linear(4, 4))
