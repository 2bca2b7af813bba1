"""Jetson / TensorRT deploy bundles: contents, settings, and build_engine.py --dry-run."""

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from ntc_export.backend.trt.bundle import JETSON_BUILD_SCRIPT, write_bundle
from ntc_export.backend.trt.manifest import read_manifest
from ntc_export.util.errors import NtcError
from ntc_export.util.paths import PLUGINS_DIR
from onnx import TensorProto, helper

DIM = 8


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _save(path: Path, nodes, inputs, outputs, initializers=(), opset=17) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("ntc", 1)])
    onnx.save(model, str(path))
    return path


def _token_model(path: Path) -> Path:
    """tokens [B, N, 8] fp16 -> MatMul by an fp16 weight -> out, with dynamic batch and tokens."""
    import numpy as np

    weight = helper.make_tensor("w", TensorProto.FLOAT16, [DIM, 4], np.ones((DIM, 4), np.float16).tobytes(), raw=True)
    return _save(path, [helper.make_node("MatMul", ["tokens", "w"], ["out"], name="proj")],
                 [helper.make_tensor_value_info("tokens", TensorProto.FLOAT16, ["B", "N", DIM])],
                 [helper.make_tensor_value_info("out", TensorProto.FLOAT16, ["B", "N", 4])], [weight])


def _attention_plugin_model(path: Path) -> Path:
    half = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT16, shape)  # noqa: E731
    node = helper.make_node("WindowAttention", ["q", "k", "v", "bias_table", "mask"], ["out"], domain="ntc",
                            heads=2, window=2, shift=0, scale=0.5, plugin_version="1")
    qkv = [half(n, [4, 2, 4, 4]) for n in "qkv"]
    return _save(path, [node], qkv + [half("bias_table", [9, 2]), half("mask", [1, 4, 4])], [half("out", None)])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundle")
    onnx_path = _token_model(folder / "tiny.fp16.onnx")
    entry = write_bundle(onnx_path, "jetson-orin", "fp16", folder / "out")
    return {"onnx": onnx_path, "out": folder / "out", "entry": entry, "dir": Path(entry["bundle_path"])}


def test_bundle_contents(bundle):
    d = bundle["dir"]
    assert d == bundle["out"] / "engines" / "jetson-orin" / "tiny.fp16.bundle"
    assert _sha(d / "tiny.fp16.onnx") == _sha(bundle["onnx"])
    assert (d / "build_engine.py").read_bytes() == JETSON_BUILD_SCRIPT.read_bytes()
    assert (d / "plugins" / "CMakeLists.txt").read_bytes() == (PLUGINS_DIR / "CMakeLists.txt").read_bytes()
    for part in ("include", "kernels", "trt", "common"):
        src = PLUGINS_DIR / part
        if src.is_dir():
            want = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file() and "build" not in p.parts)
            assert sorted(p.relative_to(d / "plugins" / part) for p in (d / "plugins" / part).rglob("*")
                          if p.is_file()) == want
    assert "jetson-orin" in (d / "README.md").read_text()
    # No staging or old bundle folders are left beside it.
    assert [p.name for p in d.parent.iterdir()] == ["tiny.fp16.bundle"]


def test_bundle_settings(bundle):
    s = json.loads((bundle["dir"] / "settings.json").read_text())
    assert (s["target"], s["sm"], s["backend"], s["precision"]) == ("jetson-orin", 87, "tensorrt", "fp16")
    assert (s["tensorrt_min"], s["tensorrt_max"], s["attention"]) == ("10.3", "10.3", "plugin")
    assert s["onnx"] == "tiny.fp16.onnx" and s["onnx_sha256"] == _sha(bundle["onnx"])
    assert s["profiles"] == {"tokens": [[1, 16, DIM], [1, 256, DIM], [8, 2304, DIM]]}  # N = h * w of 4x4:16x16:48x48
    assert s["grid"] == {"min": [4, 4], "opt": [16, 16], "max": [48, 48]}
    assert s["custom_ops"] == {} and s["plugin_library"].endswith("libntc_trt_plugins.so")
    assert s["workspace_bytes"] == 2 << 30  # a quarter of Orin's 8 GiB budget
    entry = [e for e in read_manifest(bundle["out"])["engines"] if e["target"] == "jetson-orin"][0]
    assert entry["kind"] == "bundle" and entry["executed"] is False and "build on the device" in entry["reason"]


def test_dry_run_prints_the_build_settings(bundle):
    proc = subprocess.run([sys.executable, str(bundle["dir"] / "build_engine.py"), "--dry-run"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "target: jetson-orin (sm_87), TensorRT 10.3 .. 10.3" in out
    assert "token grid: min 4x4 opt 16x16 max 48x48" in out
    assert "profile tokens: min 1x16x8 opt 1x256x8 max 8x2304x8" in out
    assert "precision: fp16 (strongly typed network)" in out and "plugins: none" in out
    assert "--stronglyTyped" in out and "--minShapes=tokens:1x16x8" in out and "--maxShapes=tokens:8x2304x8" in out


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_real_build_without_tensorrt_fails_clearly(bundle):
    proc = subprocess.run([sys.executable, str(bundle["dir"] / "build_engine.py")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and "`import tensorrt` failed" in proc.stderr


def test_plugin_bundle_names_the_library(tmp_path):
    onnx_path = _attention_plugin_model(tmp_path / "attn.fp16.onnx")
    entry = write_bundle(onnx_path, "jetson-thor", "fp16", tmp_path / "out", profiles={})
    settings = json.loads((Path(entry["bundle_path"]) / "settings.json").read_text())
    assert settings["custom_ops"] == {"ntc::WindowAttention": 1} and settings["sm"] == 110
    assert "-DCMAKE_CUDA_ARCHITECTURES=110" in settings["plugin_build"]
    proc = subprocess.run([sys.executable, str(Path(entry["bundle_path"]) / "build_engine.py"), "--dry-run"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "plugins: ntc::WindowAttention x1 from" in proc.stdout and "--staticPlugins=" in proc.stdout


def test_rewrite_replaces_the_bundle(bundle):
    again = write_bundle(bundle["onnx"], "jetson-orin", "fp16", bundle["out"], grid=(8, 8, 16))
    s = json.loads((Path(again["bundle_path"]) / "settings.json").read_text())
    assert s["profiles"]["tokens"][0] == [1, 64, DIM] and s["grid"]["min"] == [8, 8]
    assert [p.name for p in Path(again["bundle_path"]).parent.iterdir()] == ["tiny.fp16.bundle"]


def test_bundle_refusals(bundle, tmp_path):
    with pytest.raises(NtcError, match=r"fp8 needs sm_89\+: jetson-orin is sm_87"):
        write_bundle(bundle["onnx"], "jetson-orin", "fp8", tmp_path)
    with pytest.raises(NtcError, match="rtx-ada builds here with TensorRT-RTX"):
        write_bundle(bundle["onnx"], "rtx-ada", "fp16", tmp_path)
    q = [helper.make_tensor_value_info(n, TensorProto.FLOAT16, [1, 2, 4, 4]) for n in "qkv"]
    native = _save(tmp_path / "native.fp16.onnx",
                   [helper.make_node("Attention", ["q", "k", "v"], ["y"], name="attn")], q,
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)], opset=23)
    with pytest.raises(NtcError, match="uses the ONNX Attention op, which TensorRT 10.3 on jetson-orin lacks"):
        write_bundle(native, "jetson-orin", "fp16", tmp_path)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(NtcError, match="cannot write the bundle under"):
        write_bundle(bundle["onnx"], "jetson-orin", "fp16", not_a_dir)
