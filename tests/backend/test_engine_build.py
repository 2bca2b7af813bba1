"""TensorRT-RTX AOT engine builds (no GPU needed): manifest, layer summary, cache, plugins, errors, CLI."""

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from ntc_export.util.errors import NtcError
from onnx import TensorProto, helper

pytest.importorskip("tensorrt_rtx_bindings")

from ntc_export.backend.onnx.inspect import onnx_precision  # noqa: E402
from ntc_export.backend.trt import env as trt_env  # noqa: E402
from ntc_export.backend.trt.build import build_engine  # noqa: E402
from ntc_export.backend.trt.manifest import read_manifest  # noqa: E402
from ntc_export.backend.trt.profiles import input_profiles  # noqa: E402
from ntc_export.backend.trt.runner import TrtRunner  # noqa: E402
from ntc_export.ops import trt_registry  # noqa: E402

RTX_TARGETS = {"rtx-ampere": 86, "rtx-ada": 89, "rtx-blackwell": 120}
DIM = 8


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(DIM, 16)
        self.norm = torch.nn.LayerNorm(16)

    def forward(self, tokens):
        return self.norm(torch.nn.functional.gelu(self.fc(tokens)))


def _export_tiny(folder: Path) -> tuple[Path, Path]:
    """tiny.fp32.onnx and its onnxconverter-common fp16 conversion, dynamic batch and token axes."""
    from onnxconverter_common import float16

    fp32 = folder / "tiny.fp32.onnx"
    torch.onnx.export(_Tiny().eval(), (torch.randn(1, 4, DIM),), str(fp32), input_names=["tokens"],
                      output_names=["out"], dynamic_axes={"tokens": {0: "B", 1: "N"}, "out": {0: "B", 1: "N"}},
                      opset_version=17, dynamo=False)
    fp16 = folder / "tiny.fp16.onnx"
    onnx.save(float16.convert_float_to_float16(onnx.load(str(fp32))), str(fp16))
    return fp32, fp16


def _plugin_model(path: Path, nodes, inputs, outputs) -> Path:
    graph = helper.make_graph(nodes, "plugins", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ntc", 1)])
    onnx.save(model, str(path))
    return path


def _bc_node(fmt="bc7", layout="tokens", dtype="float32", **extra):
    return helper.make_node("BcDecode", ["blocks"], ["image"], domain="ntc", name="bc", format=fmt, layout=layout,
                            dtype=dtype, plugin_version="1", **extra)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The tiny fp16 model built once for each RTX target (engines shared by the tests below)."""
    folder = tmp_path_factory.mktemp("engines")
    fp32, fp16 = _export_tiny(folder)
    out = folder / "out"
    results = {t: build_engine(fp16, t, "fp16", out) for t in RTX_TARGETS}
    return {"fp32": fp32, "fp16": fp16, "out": out, "results": results}


def test_aot_builds_for_each_rtx_target(built):
    manifest = read_manifest(built["out"])
    entries = {e["target"]: e for e in manifest["engines"]}
    assert set(entries) == set(RTX_TARGETS)
    fp16_nodes = {n.name for n in onnx.load(str(built["fp16"])).graph.node}
    for target, sm in RTX_TARGETS.items():
        result, entry = built["results"][target], entries[target]
        assert result["cache"] == "miss"
        engine = Path(result["engine_path"])
        assert engine == built["out"] / "engines" / target / "tiny.fp16.engine"
        data = engine.read_bytes()
        assert entry["engine_bytes"] == len(data) > 0
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        for key in ("model", "target", "sm", "backend", "backend_version", "precision", "plugins", "profiles",
                    "engine_bytes", "sha256", "build_seconds", "layers", "cache_key", "onnx_sha256"):
            assert key in entry, key
        assert (entry["sm"], entry["backend"], entry["precision"]) == (sm, "tensorrt_rtx", "fp16")
        assert entry["backend_version"] == trt_env.version_info()["version"]
        # the default grid 4x4:16x16:48x48 on flat tokens: N = h * w
        assert entry["profiles"] == {"tokens": [[1, 16, DIM], [1, 256, DIM], [8, 2304, DIM]]}
        assert entry["inputs"] == [{"name": "tokens", "shape": [-1, -1, DIM], "dtype": "fp16"}]
        layers = entry["layers"]
        assert layers and entry["layer_summary"]["layers"] == len(layers)
        # Every ONNX node the summary names exists in the fp16 graph, and the compute runs in fp16.
        named = {name for layer in layers for name in layer["onnx_layers"]}
        assert named and named <= fp16_nodes
        assert any(layer["precision"] == "fp16" for layer in layers)
        assert (built["out"] / "engines" / entry["build_log"]).stat().st_size > 0


def test_rebuild_is_a_cache_hit_and_profile_change_is_not(built):
    target = "rtx-ada"
    engine = Path(built["results"][target]["engine_path"])
    before = engine.stat().st_mtime_ns
    again = build_engine(built["fp16"], target, "fp16", built["out"])
    assert again["cache"] == "hit" and again["sha256"] == built["results"][target]["sha256"]
    assert engine.stat().st_mtime_ns == before
    other = build_engine(built["fp16"], target, "fp16", built["out"], grid=(8, 16, 16))
    assert other["cache"] == "miss" and other["profiles"]["tokens"][2] == [8, 256, DIM]
    entries = [e for e in read_manifest(built["out"])["engines"] if e["target"] == target]
    assert len(entries) == 1 and entries[0]["cache_key"] == other["cache_key"]


def test_precision_must_match_the_onnx_type(built, tmp_path):
    with pytest.raises(NtcError, match="tiny.fp32.onnx is fp32-typed but precision fp16 was asked"):
        build_engine(built["fp32"], "rtx-ada", "fp16", tmp_path)
    with pytest.raises(NtcError, match=r"^fp8 needs sm_89\+: rtx-ampere is sm_86"):
        build_engine(built["fp16"], "rtx-ampere", "fp8", tmp_path)
    with pytest.raises(NtcError, match="jetson-orin builds with TensorRT on the device"):
        build_engine(built["fp16"], "jetson-orin", "fp16", tmp_path)


def test_plugin_nodes_build_with_python_creators(tmp_path):
    by, bx, heads, window, head_dim, n_windows, bw = 3, 5, 2, 2, 4, 3, 6
    tokens = window * window
    bc = _plugin_model(tmp_path / "bc.fp32.onnx", [_bc_node()],
                       [helper.make_tensor_value_info("blocks", TensorProto.INT32, [2, by, bx, 4])],
                       [helper.make_tensor_value_info("image", TensorProto.FLOAT, None)])
    attn_node = helper.make_node("WindowAttention", ["q", "k", "v", "bias_table", "mask"], ["out"], domain="ntc",
                                 name="attn", heads=heads, window=window, shift=1, scale=0.5, plugin_version="1")
    half = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT16, shape)  # noqa: E731
    qkv = [half(n, [bw, heads, tokens, head_dim]) for n in "qkv"]
    attn = _plugin_model(tmp_path / "attn.fp16.onnx", [attn_node],
                         qkv + [half("bias_table", [(2 * window - 1) ** 2, heads]),
                                half("mask", [n_windows, tokens, tokens])], [half("out", None)])
    bc_entry = build_engine(bc, "rtx-blackwell", "fp32", tmp_path / "out")
    attn_entry = build_engine(attn, "rtx-ada", "fp16", tmp_path / "out")
    # Output shapes and types follow the contracts: tokens layout [B, 16*by*bx, C] (bc7: C=4), and
    # [BW, T, heads*hd] in the dtype of q.
    assert bc_entry["outputs"] == [{"name": "image", "shape": [2, 16 * by * bx, 4], "dtype": "fp32"}]
    assert attn_entry["outputs"] == [{"name": "out", "shape": [bw, tokens, heads * head_dim], "dtype": "fp16"}]
    for entry, op in ((bc_entry, "ntc::BcDecode"), (attn_entry, "ntc::WindowAttention")):
        assert [(p["op"], p["provider"], p["nodes"]) for p in entry["plugins"]] == [(op, "python_creators", 1)]
        assert any(layer["type"] == "custom_layer" for layer in entry["layers"])


def test_bc_decode_nchw_shape_per_format(tmp_path):
    bc5 = _plugin_model(tmp_path / "bc5.fp16.onnx", [_bc_node("bc5", "nchw", "float16")],
                        [helper.make_tensor_value_info("blocks", TensorProto.INT32, [1, 2, 3, 4])],
                        [helper.make_tensor_value_info("image", TensorProto.FLOAT16, None)])
    entry = build_engine(bc5, "rtx-ampere", "fp16", tmp_path / "out")
    assert entry["outputs"] == [{"name": "image", "shape": [1, 2, 8, 12], "dtype": "fp16"}]


def test_creator_parses_fields_like_the_parser_passes_them():
    trt = trt_env.import_backend("tensorrt_rtx")
    bc_creator, attn_creator = (cls() for cls in trt_registry.make_plugin_classes(trt))
    # PluginField holds a raw pointer, so the arrays stay referenced here while the plugin is created.
    texts = {k: np.frombuffer(v.encode() + b"\0", np.int8) for k, v in
             (("format", "bc4"), ("layout", "nchw"), ("dtype", "float32"))}
    bc = bc_creator.create_plugin("bc", trt.PluginFieldCollection(
        [trt.PluginField(k, a, trt.PluginFieldType.CHAR) for k, a in texts.items()]), trt.TensorRTPhase.BUILD)
    assert bc.fields == {"format": "bc4", "layout": "nchw", "dtype": "float32"} and (bc.code, bc.channels) == (1, 1)
    numbers = [np.array([6], np.int32), np.array([7], np.int32), np.array([0.125], np.float32)]
    attn = attn_creator.create_plugin("attn", trt.PluginFieldCollection([
        trt.PluginField("heads", numbers[0], trt.PluginFieldType.INT32),
        trt.PluginField("window", numbers[1], trt.PluginFieldType.INT32),
        trt.PluginField("scale", numbers[2], trt.PluginFieldType.FLOAT32)]), trt.TensorRTPhase.BUILD)
    # What the plugin serializes into the engine reads back to the same fields.
    again = bc_creator.create_plugin("bc", bc.get_fields_to_serialize(), trt.TensorRTPhase.RUNTIME)
    assert again.fields == bc.fields
    again = attn_creator.create_plugin("attn", attn.get_fields_to_serialize(), trt.TensorRTPhase.RUNTIME)
    assert attn.fields == {"heads": 6, "window": 7, "shift": 0, "scale": 0.125}
    assert again.fields == attn.fields and attn.clone().fields == attn.fields


def test_unknown_custom_ops_are_refused(tmp_path):
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 4])
    foo = _plugin_model(tmp_path / "foo.fp16.onnx", [helper.make_node("Foo", ["x"], ["y"], domain="ntc")], [x], [out])
    with pytest.raises(NtcError, match="unknown custom op ntc::Foo .*known: ntc::BcDecode v1, ntc::WindowAttention"):
        build_engine(foo, "rtx-ada", "fp16", tmp_path / "out")
    bar = _plugin_model(tmp_path / "bar.fp16.onnx", [helper.make_node("Bar", ["x"], ["y"], domain="com.example")],
                        [x], [out])
    with pytest.raises(NtcError, match="unknown custom op com.example::Bar"):
        build_engine(bar, "rtx-ada", "fp16", tmp_path / "out")
    blocks = helper.make_tensor_value_info("blocks", TensorProto.INT32, [1, 1, 1, 4])
    bad = _plugin_model(tmp_path / "bad.fp32.onnx", [_bc_node("bc9")], [blocks],
                        [helper.make_tensor_value_info("image", TensorProto.FLOAT, None)])
    with pytest.raises(NtcError, match="format='bc9'; choose from bc1, bc4"):
        build_engine(bad, "rtx-ada", "fp32", tmp_path / "out")


def test_unwritable_out_dir_and_missing_plugin_library(built, tmp_path):
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("x")
    with pytest.raises(NtcError, match="cannot write engines under"):
        build_engine(built["fp16"], "rtx-ada", "fp16", not_a_dir / "out")
    with pytest.raises(NtcError, match="plugin library .*libntc_trt_plugins.so not found"):
        build_engine(built["fp16"], "rtx-ada", "fp16", tmp_path, plugin_lib=tmp_path / "libntc_trt_plugins.so")
    with pytest.raises(NtcError, match="input 'x' has dynamic shape"):
        input_profiles([("x", [-1, 4])], None)


def test_trt_runner_reports_why_it_cannot_run(built):
    entry = built["results"]["rtx-blackwell"]
    ok, why = TrtRunner(entry["engine_path"], entry).can_run()
    if not torch.cuda.is_available():
        assert not ok and why == "no CUDA device"
    tampered = dict(entry, sha256="0" * 64)
    ok, why = TrtRunner(entry["engine_path"], tampered).can_run()
    assert not ok and "does not match the manifest sha256" in why


def test_build_command_refuses_then_builds(built, tmp_path):
    from ntc_export.cli import main

    out = tmp_path / "cli"
    assert main(["build", str(built["fp16"]), "--target", "rtx-ampere", "--precision", "fp8", "--out", str(out)]) == 2
    assert not (out / "engines" / "manifest.json").exists()
    args = ["build", str(built["fp16"]), "--target", "rtx-ada", "--target", "jetson-orin", "--out", str(out), "--json"]
    assert main(args) == 0
    entries = {(e["kind"], e["target"]) for e in read_manifest(out)["engines"]}
    assert entries == {("engine", "rtx-ada"), ("bundle", "jetson-orin")}
    manifest = json.loads((out / "engines" / "manifest.json").read_text())
    assert all(e["precision"] == "fp16" for e in manifest["engines"])


def _qdq_model(path: Path, kind: str) -> Path:
    """tokens -> Q/DQ -> MatMul with a Q/DQ weight: int8 (INT8 zero points) or fp8 (FLOAT8E4M3FN zero points)."""
    zp_type = TensorProto.INT8 if kind == "int8" else TensorProto.FLOAT8E4M3FN
    weight = np.random.default_rng(0).standard_normal((DIM, 16)).astype(np.float32)
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [], [0.05]), helper.make_tensor("zp", zp_type, [], [0]),
             helper.make_tensor("w", TensorProto.FLOAT, [DIM, 16], weight.ravel()),
             helper.make_tensor("ws", TensorProto.FLOAT, [], [0.02])]
    nodes = [helper.make_node("QuantizeLinear", ["tokens", "s", "zp"], ["tq"], name="q_tokens"),
             helper.make_node("DequantizeLinear", ["tq", "s", "zp"], ["td"], name="dq_tokens"),
             helper.make_node("QuantizeLinear", ["w", "ws", "zp"], ["wq"], name="q_w"),
             helper.make_node("DequantizeLinear", ["wq", "ws", "zp"], ["wd"], name="dq_w"),
             helper.make_node("MatMul", ["td", "wd"], ["out"], name="matmul")]
    tokens = helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["B", "N", DIM])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["B", "N", 16])
    graph = helper.make_graph(nodes, "qdq", [tokens], [out], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), str(path))
    return path


@pytest.mark.parametrize("target,kind", [("rtx-ampere", "int8"), ("rtx-ada", "fp8")])
def test_qdq_onnx_builds_with_the_matmul_in_the_quantized_type(tmp_path, target, kind):
    onnx_path = _qdq_model(tmp_path / f"q.{kind}.onnx", kind)
    assert onnx_precision(onnx.load(str(onnx_path))) == kind
    with pytest.raises(NtcError, match=f"q.{kind}.onnx is {kind}-typed but precision fp16 was asked"):
        build_engine(onnx_path, target, "fp16", tmp_path / "out")
    entry = build_engine(onnx_path, target, kind, tmp_path / "out")
    gemm = [layer for layer in entry["layers"] if "matmul" in layer["onnx_layers"]]
    assert gemm and gemm[0]["precision"] == kind and kind in gemm[0]["input_dtypes"]


def test_fp32_native_attention_is_marked_decomposable(tmp_path):
    shape = [1, 2, 4, 8]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in "qkv"]
    graph = helper.make_graph([helper.make_node("Attention", ["q", "k", "v"], ["y"], name="attn", scale=0.25)],
                              "attn", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / "attn.fp32.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)]), str(path))
    entry = build_engine(path, "rtx-ada", "fp32", tmp_path / "out")
    assert entry["build_rewrites"] == ["TRT_decomposable=1 on 1 fp32 Attention node(s)"]
    assert entry["outputs"][0]["shape"] == shape
    # The file itself is left as exported (onnx.checker rejects the attribute).
    assert not any(a.name == "TRT_decomposable" for a in onnx.load(str(path)).graph.node[0].attribute)


def test_inspector_json_summary():
    from ntc_export.backend.trt.build_log import layers_from_inspector, summarize

    info = {"Layers": [
        {"Name": "gemm_0", "LayerType": "gemm", "Inputs": [{"Name": "x", "Format/Datatype": "Row major linear FP8"}],
         "Outputs": [{"Name": "y", "Format/Datatype": "Row major linear FP32 format"}],
         "TacticName": "t", "Metadata": "[ONNX Layer: /mm][ONNX Layer: /dq]"},
        {"Name": "cast_1", "LayerType": "Cast", "Inputs": [{"Name": "y", "Datatype": "Float"}],
         "Outputs": [{"Name": "z", "Datatype": "Half"}], "Metadata": "[ONNX Layer: /cast]"}]}
    layers = layers_from_inspector(json.dumps(info))
    assert [(la["precision"], la["fused"], la["onnx_layers"]) for la in layers] == [
        ("fp8", True, ["/mm", "/dq"]), ("fp16", False, ["/cast"])]
    assert summarize(layers) == {"layers": 2, "fused": 1, "by_precision": {"fp8": 1, "fp16": 1}}


def test_parser_symlink_fix(tmp_path):
    (tmp_path / "libtensorrt_rtx.so.1").write_bytes(b"lib")
    link = trt_env.fix_rtx_parser_symlink(tmp_path)
    assert link == tmp_path / "libtensorrt_rtx.so" and link.is_symlink()
    assert link.resolve() == (tmp_path / "libtensorrt_rtx.so.1").resolve()
    assert trt_env.fix_rtx_parser_symlink(tmp_path) is None  # already complete: nothing to do
    installed = trt_env.rtx_libs_dir()
    assert installed is not None and (installed / "libtensorrt_rtx.so").exists()
