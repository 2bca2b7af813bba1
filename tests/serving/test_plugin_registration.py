"""How Triton's TensorRT backend sees our plugins: it only dlopens the libraries named in
`--backend-config=tensorrt,plugins=...` (RTLD_NOW | RTLD_LOCAL) and never calls getCreators, so with
NTC_TRT_REGISTER_ON_LOAD=1 libntc_trt_plugins.so registers its creators with the process's TensorRT plugin registry
when it is loaded. Checked here on TensorRT-RTX's real registry (NTC_TRT_LIBRARY=libtensorrt_rtx.so.1; its registry
has the layout of the TensorRT 11 headers): a plain dlopen registers both creators and an engine with a plugin node
builds from them alone; without the variable nothing is registered on load (TensorRT's loadLibrary path)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ntc_export.util.paths import PLUGINS_DIR

pytest.importorskip("tensorrt_rtx_bindings", reason="tensorrt_rtx (TensorRT-RTX wheel) is not installed")
REPO = Path(__file__).resolve().parents[2]


def _header_major(root: Path) -> int | None:
    for inc in (root / "include", root):
        if (inc / "NvInferVersion.h").is_file():
            text = subprocess.run(["c++", "-E", "-P", "-x", "c++", f"-I{inc}", "-"], capture_output=True, text=True,
                                  input="#include <NvInferVersion.h>\nNV_TENSORRT_MAJOR\n").stdout.split()
            return int(text[-1]) if text and text[-1].isdigit() else None
    return None


@pytest.fixture(scope="module")
def plugin_lib(tmp_path_factory) -> Path:
    """libntc_trt_plugins.so built against TensorRT >= 11 headers ($TensorRT_ROOT), or NTC_TRT11_PLUGIN_LIB."""
    given = os.environ.get("NTC_TRT11_PLUGIN_LIB")
    if given:
        return Path(given)
    root = os.environ.get("TensorRT_ROOT")
    if not root:
        pytest.skip("no TensorRT headers: set TensorRT_ROOT=<NVIDIA/TensorRT include/ at v11.1> (never committed)")
    major = _header_major(Path(root))
    if major is None or major < 11:
        pytest.skip(f"TensorRT_ROOT holds {major or 'unknown'}.x headers; TensorRT-RTX's registry has the layout of "
                    "the 11.x headers, so this check needs those")
    if not (shutil.which("cmake") and shutil.which("nvcc")):
        pytest.skip("cmake and nvcc are needed to build libntc_trt_plugins.so")
    build = tmp_path_factory.mktemp("trt11_plugins")
    proc = subprocess.run(["bash", REPO / "scripts" / "compile_check_trt.sh", f"TensorRT_ROOT={root}",
                           f"BUILD_DIR={build}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return build / "libntc_trt_plugins.so"


# Runs in a fresh process: dlopen as Triton's backend does, then look at the registry and build from it.
_HOST = textwrap.dedent("""
    import ctypes, json, os, sys
    import onnx
    from onnx import TensorProto, helper
    import tensorrt_rtx as trt

    registry = trt.get_plugin_registry()
    ctypes.CDLL(sys.argv[1], mode=os.RTLD_NOW | os.RTLD_LOCAL)
    found = {op: registry.get_creator(op, "1", "ntc") is not None for op in ("BcDecode", "WindowAttention")}
    built = None
    if all(found.values()):
        node = helper.make_node("BcDecode", ["blocks"], ["out"], domain="ntc", plugin_version="1", format="bc5",
                                layout="tokens", dtype="float32")
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("blocks", TensorProto.INT32,
                                  [1, 2, 2, 4])], [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ntc", 1)])
        logger = trt.Logger(trt.Logger.ERROR)
        builder = trt.Builder(logger)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parsed = trt.OnnxParser(network, logger).parse(model.SerializeToString())
        config = builder.create_builder_config()
        config.num_compute_capabilities = 1
        config.set_compute_capability(trt.ComputeCapability.SM86, 0)
        engine = builder.build_serialized_network(network, config) if parsed else None
        built = {"parsed": bool(parsed), "engine_bytes": 0 if engine is None else engine.nbytes,
                 "output": list(network.get_output(0).shape) if parsed else None}
    print(json.dumps({"registered": found, "built": built}))
""")


def _host(lib: Path, **env) -> tuple[dict, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NTC_TRT_")}
    environ.update(env)
    proc = subprocess.run([sys.executable, "-c", _HOST, str(lib)], capture_output=True, text=True, env=environ,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_dlopen_registers_the_creators_and_an_engine_builds_from_them(plugin_lib):
    result, _ = _host(plugin_lib, NTC_TRT_REGISTER_ON_LOAD="1", NTC_TRT_LIBRARY="libtensorrt_rtx.so.1")
    assert result["registered"] == {"BcDecode": True, "WindowAttention": True}
    assert result["built"]["parsed"] and result["built"]["engine_bytes"] > 0
    assert result["built"]["output"] == [1, 16 * 2 * 2, 2]  # bc5 tokens layout: 16 texels per block, 2 channels


def test_without_the_variable_loading_registers_nothing(plugin_lib):
    result, _ = _host(plugin_lib)
    assert result == {"registered": {"BcDecode": False, "WindowAttention": False}, "built": None}


def test_a_missing_tensorrt_library_is_reported_not_fatal(plugin_lib):
    result, stderr = _host(plugin_lib, NTC_TRT_REGISTER_ON_LOAD="1", NTC_TRT_LIBRARY="libnvinfer_missing.so.11")
    assert result["registered"] == {"BcDecode": False, "WindowAttention": False}
    assert "libnvinfer_missing.so.11 (getPluginRegistry) could not be loaded" in stderr


def test_the_source_is_shipped():
    assert (PLUGINS_DIR / "trt" / "register_on_load.cpp").is_file()
