"""fp16 TensorRT-RTX engines, built ahead of time without a GPU, for every zoo model and RTX target — BC-autoencoder
decoders in both the native-attention and the plugin lowering (ntc::BcDecode + ntc::WindowAttention nodes through
the Python creators), the reducers as the graphs that ship (fp16 at the interface) — and fp8 on rtx-ampere refused with
a clear message."""

import onnx
import pytest
from ntc_export.backend.onnx.export import export_model
from ntc_export.backend.trt.profiles import DEFAULT_BATCH, DEFAULT_GRID
from ntc_export.models import load
from ntc_export.util.errors import NtcError
from ntc_export.util.paths import ZOO_DIR

pytest.importorskip("tensorrt_rtx_bindings")
from ntc_export.backend.trt.build import build_engine  # noqa: E402  (needs TensorRT-RTX)

# One checkpoint of each later compressor family (the others differ only in widths; the demo builds them all).
REPRESENTATIVES = {"vq_": "vq_x64", "hp_": "hp_x70", "ntc_": "ntc_bc5_x32"}


def _tested(stem: str) -> bool:
    prefix = next((k for k in REPRESENTATIVES if stem.startswith(k)), None)
    return prefix is None or REPRESENTATIVES[prefix] == stem


ZOO = sorted(p.stem for p in ZOO_DIR.glob("*.pt") if _tested(p.stem))
TARGETS = ("rtx-ampere", "rtx-ada", "rtx-blackwell")


def test_zoo_is_complete():
    assert {"mlp2x_gelu", "patch_merger", "pixel_shuffle", "merge3x3", "conv16x"} <= set(ZOO)
    assert any(n.startswith("bcae") for n in ZOO) and set(REPRESENTATIVES.values()) <= set(ZOO)


@pytest.mark.parametrize("name", ZOO)
def test_fp16_engines_for_every_rtx_target(name, tmp_path):
    module = load(ZOO_DIR / f"{name}.pt")
    lowerings = ("native", "plugin") if name.startswith("bcae") else ("decomposed",)
    for lowering in lowerings:
        fp16 = export_model(module, tmp_path / lowering, ("fp16",), attention=lowering, name=name)["fp16"]
        ops = {(n.domain, n.op_type) for n in onnx.load(str(fp16)).graph.node}
        if lowering == "plugin":
            assert {("ntc", "BcDecode"), ("ntc", "WindowAttention")} <= ops
        if lowering == "native":
            assert ("", "Attention") in ops
        out = tmp_path / f"out-{lowering}"
        for target in TARGETS:
            entry = build_engine(fp16, target, "fp16", out, profiles=module.input_profiles(DEFAULT_BATCH, DEFAULT_GRID))
            engine = out / "engines" / entry["engine"]
            assert engine.stat().st_size == entry["engine_bytes"] > 10_000
            assert entry["sm"] in (86, 89, 120) and entry["precision"] == "fp16"
            assert entry["layer_summary"]["by_precision"].get("fp16", 0) > 0
            if lowering == "plugin":
                assert {p["op"].split("::")[-1] for p in entry["plugins"]} >= {"BcDecode", "WindowAttention"}


def test_fp8_on_ampere_is_refused(tmp_path):
    module = load(ZOO_DIR / "mlp2x_gelu.pt")
    fp16 = export_model(module, tmp_path, ("fp16",))["fp16"]
    with pytest.raises(NtcError, match="fp8 needs sm_89"):
        build_engine(fp16, "rtx-ampere", "fp8", tmp_path / "out")
    assert not (tmp_path / "out" / "engines" / "rtx-ampere").exists()
