"""fp16 TensorRT-RTX engines, built ahead of time without a GPU, for one zoo model of each architecture — the
BC-autoencoder decoder in both the native-attention and the plugin lowering (ntc::BcDecode + ntc::WindowAttention
nodes through the Python creators), the five projectors, the other compressor families, the reducers as the graphs
that ship (fp16 at the interface) — every RTX target at least once, and fp8 on rtx-ampere refused with a clear message.

Why this subset suffices: a model's siblings (bcae_x4..x64, the vq / hp / ntc rates, visionzip_64) export the same
graph with other widths, so they meet the builder with the same ops and plugins (ntc_grid: one per storage). Another
target is the same graph for another SM: tests/backend/test_targets.py checks the target table and
tests/backend/test_engine_build.py builds for every RTX target, so only the plugin graph (the target-sensitive one)
is built for all of them here and the other graphs are spread over the targets."""

import onnx
import pytest
from ntc_export.backend.onnx.export import export_model
from ntc_export.backend.trt.profiles import DEFAULT_BATCH, DEFAULT_GRID
from ntc_export.backend.trt.targets import get_target
from ntc_export.models import load
from ntc_export.util.errors import NtcError
from ntc_export.util.paths import ZOO_DIR

pytest.importorskip("tensorrt_rtx_bindings")
from ntc_export.backend.trt.build import build_engine  # noqa: E402  (needs TensorRT-RTX)

TARGETS = ("rtx-ampere", "rtx-ada", "rtx-blackwell")
# (model, lowering) -> the targets it is built for: one model per architecture, every target covered.
CASES = {
    ("bcae_x16", "plugin"): TARGETS,  # blocks -> tokens, BcDecode + WindowAttention plugins
    ("bcae_x16", "native"): ("rtx-ada",),  # the same decoder with TensorRT's own Attention
    ("mlp2x_gelu", "decomposed"): ("rtx-ampere",),  # tokens -> tokens, logits
    ("patch_merger", "decomposed"): ("rtx-ada",),
    ("pixel_shuffle", "decomposed"): ("rtx-blackwell",),
    ("merge3x3", "decomposed"): ("rtx-ampere",),
    ("conv16x", "decomposed"): ("rtx-ada",),
    ("ovis_vet_512", "decomposed"): ("rtx-blackwell",),
    ("vq_x64", "decomposed"): ("rtx-ampere",),  # indices
    ("hp_x86", "decomposed"): ("rtx-ada",),  # latents
    ("ntc_bc5_x32", "decomposed"): ("rtx-blackwell",),  # blocks + coarse_blocks, BcDecode plugins
    ("ntc_x16", "decomposed"): ("rtx-blackwell",),  # int4 codes + coarse, no plugin
    ("tome_64", "decomposed"): ("rtx-ampere",),  # tokens + keys -> tokens_out, sizes
    ("visionzip_16", "decomposed"): ("rtx-ada",),  # tokens + attention + keys
}


def test_every_architecture_and_target_is_built():
    archs = {load(p).arch for p in ZOO_DIR.glob("*.pt")}
    assert {load(ZOO_DIR / f"{name}.pt").arch for name, _ in CASES} == archs
    assert {"mlp2x_gelu", "patch_merger", "pixel_shuffle", "merge3x3", "conv16x"} <= archs
    assert set().union(*CASES.values()) == set(TARGETS)


def _export_fp16(name: str, lowering: str, folder):
    module = load(ZOO_DIR / f"{name}.pt")
    return module, export_model(module, folder, ("fp16",), attention=lowering, name=name)["fp16"]


@pytest.mark.parametrize("name,lowering", list(CASES))
def test_fp16_engines_for_the_rtx_targets(name, lowering, tmp_path):
    module, fp16 = _export_fp16(name, lowering, tmp_path / lowering)
    ops = {(n.domain, n.op_type) for n in onnx.load(str(fp16)).graph.node}
    if lowering == "plugin":
        assert {("ntc", "BcDecode"), ("ntc", "WindowAttention")} <= ops
    if lowering == "native":
        assert ("", "Attention") in ops
    custom = {op for domain, op in ops if domain == "ntc"}
    out = tmp_path / "out"
    for target in CASES[name, lowering]:
        entry = build_engine(fp16, target, "fp16", out, profiles=module.input_profiles(DEFAULT_BATCH, DEFAULT_GRID))
        engine = out / "engines" / entry["engine"]
        assert engine.stat().st_size == entry["engine_bytes"] > 10_000
        assert entry["sm"] == get_target(target).sm and entry["precision"] == "fp16"
        assert entry["layer_summary"]["by_precision"].get("fp16", 0) > 0
        # Every ntc:: node of a compressor's graph is a plugin layer of its engine.
        assert {p["op"].split("::")[-1] for p in entry["plugins"]} == custom


def test_fp8_on_ampere_is_refused(tmp_path):
    _, fp16 = _export_fp16("mlp2x_gelu", "decomposed", tmp_path)
    with pytest.raises(NtcError, match="fp8 needs sm_89"):
        build_engine(fp16, "rtx-ampere", "fp8", tmp_path / "out")
    assert not (tmp_path / "out" / "engines" / "rtx-ampere").exists()
