"""The plugins/ CMake build: CUDA kernels (sm_86) + plain C++ contract tests without TensorRT, the message saying
the TensorRT plugin library is skipped, and (when TensorRT headers or a built library are given) TensorRT-RTX
engines built with the C++ plugin library instead of the Python creators."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ntc_export.util.paths import PLUGINS_DIR

REPO = Path(__file__).resolve().parents[2]
SKIP_MESSAGE = "not the TensorRT plugin library"
SYSTEM_HEADER_DIRS = ("/usr/include/x86_64-linux-gnu", "/usr/include/aarch64-linux-gnu", "/usr/local/tensorrt/include",
                      "/usr/include")

needs_toolchain = pytest.mark.skipif(not (shutil.which("cmake") and shutil.which("nvcc")),
                                     reason="cmake and nvcc are needed to build plugins/ (CUDA kernels)")


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def kernels_build(tmp_path_factory):
    """plugins/ configured with no TensorRT headers and built for sm_86 only (CI time)."""
    root = tmp_path_factory.mktemp("plugins_build")
    no_headers = root / "no-tensorrt"
    no_headers.mkdir()
    build = root / "build"
    env = {k: v for k, v in os.environ.items() if k != "TensorRT_ROOT"}
    configure = _run(["cmake", "-S", PLUGINS_DIR, "-B", build, f"-DTensorRT_ROOT={no_headers}",
                      "-DCMAKE_CUDA_ARCHITECTURES=86"], env=env)
    _run(["cmake", "--build", build, "-j", str(os.cpu_count() or 2)], env=env)
    return build, configure.stdout


@needs_toolchain
def test_contract_tests_pass(kernels_build):
    build, _ = kernels_build
    proc = _run([build / "ntc_contract_tests"])
    line = proc.stdout.strip().splitlines()[-1]
    checks, failed = (int(w) for w in line.replace(",", "").split() if w.isdigit())
    assert failed == 0 and checks >= 100, line


@needs_toolchain
def test_kernels_built_and_trt_library_skipped(kernels_build):
    build, log = kernels_build
    assert (build / "libntc_kernels.so").stat().st_size > 0
    exported = _run(["nm", "-D", "--defined-only", build / "libntc_kernels.so"]).stdout
    for symbol in ("ntc_bc_decode_cuda", "ntc_bc_decode_gather_cuda", "ntc_window_attention_cuda"):
        assert f" {symbol}\n" in exported, symbol
    if any((Path(d) / "NvInfer.h").is_file() for d in SYSTEM_HEADER_DIRS):
        pytest.skip("TensorRT headers are installed system-wide here: CMake finds them, so nothing is skipped")
    assert SKIP_MESSAGE in log and "TensorRT headers not found" in log, log
    assert not (build / "libntc_trt_plugins.so").exists()


# sm_86 comes from the CMake build above; these are the other CI architectures (nvcc -c only, no link).
OTHER_ARCHS = (87, 89, 90, 120)


@needs_toolchain
def test_kernels_compile_for_every_ci_architecture(tmp_path):
    # Measured on the 2-core CI-class machine: all five architectures, three .cu files, ~50 s of CPU time.
    from concurrent.futures import ThreadPoolExecutor

    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in OTHER_ARCHS]
    sources = sorted((PLUGINS_DIR / "kernels").glob("*.cu"))
    assert sources

    def compile_one(src: Path) -> str:
        # ptxas -v names the architecture of every entry function it compiles.
        return _run(["nvcc", "-c", "-std=c++17", "--expt-relaxed-constexpr", "-Xcompiler", "-fPIC", "-Xptxas", "-v",
                     f"-I{PLUGINS_DIR / 'include'}", *gencode, src, "-o", tmp_path / f"{src.stem}.o"]).stderr

    with ThreadPoolExecutor(max_workers=2) as pool:
        logs = dict(zip(sources, pool.map(compile_one, sources)))
    for src, log in logs.items():
        assert (tmp_path / f"{src.stem}.o").stat().st_size > 0
        for arch in OTHER_ARCHS:
            assert f"for 'sm_{arch}'" in log, (src.name, arch)


# ---- TensorRT-RTX engines with the C++ plugin library ------------------------------------------------------------

def _trt_headers() -> Path | None:
    root = os.environ.get("TensorRT_ROOT")
    if root and ((Path(root) / "include" / "NvInfer.h").is_file() or (Path(root) / "NvInfer.h").is_file()):
        return Path(root)
    return None


@pytest.fixture(scope="module")
def trt_plugin_lib(tmp_path_factory) -> Path:
    """NTC_TRT_PLUGIN_LIB if set, else libntc_trt_plugins.so built by compile_check_trt.sh from $TensorRT_ROOT."""
    pytest.importorskip("tensorrt_rtx_bindings", reason="tensorrt_rtx (TensorRT-RTX wheel) is not installed")
    given = os.environ.get("NTC_TRT_PLUGIN_LIB")
    if given:
        assert Path(given).is_file(), f"NTC_TRT_PLUGIN_LIB={given} does not exist"
        return Path(given)
    headers = _trt_headers()
    if headers is None:
        pytest.skip("no C++ plugin library: set NTC_TRT_PLUGIN_LIB=<libntc_trt_plugins.so> or TensorRT_ROOT=<TensorRT "
                    "headers> (e.g. NVIDIA/TensorRT's include/ at v10.16)")
    if not (shutil.which("cmake") and shutil.which("nvcc")):
        pytest.skip("cmake and nvcc are needed to build libntc_trt_plugins.so")
    build = tmp_path_factory.mktemp("trt_plugins_build")
    _run(["bash", REPO / "scripts" / "compile_check_trt.sh", f"TensorRT_ROOT={headers}", f"BUILD_DIR={build}"])
    return build / "libntc_trt_plugins.so"


# Each build runs in a fresh process: a plugin library loads once per process (a second load_library of the same
# path returns None), and the Python creators from other tests must not stand in for the C++ ones.
_BUILD_SCRIPT = textwrap.dedent("""
    import json, sys
    import onnx
    from onnx import TensorProto, helper
    from ntc_export.backend.trt import build_log
    from ntc_export.backend.trt.build import build_engine
    from ntc_export.util.errors import NtcError

    # Keep the build's TensorRT logger: plugin errors reach it when the library logs through setLoggerFinder.
    loggers, make_logger = [], build_log.make_capture_logger
    build_log.make_capture_logger = lambda trt: loggers.append(make_logger(trt)) or loggers[-1]

    spec = json.loads(sys.argv[1])
    elem = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "int32": TensorProto.INT32}
    node = helper.make_node(spec["op"], spec["inputs"], ["out"], domain="ntc", name="plugin", plugin_version="1",
                            **spec["attrs"])
    inputs = [helper.make_tensor_value_info(n, elem[t], s) for n, t, s in spec["input_specs"]]
    output = helper.make_tensor_value_info("out", elem[spec["out"]], None)
    graph = helper.make_graph([node], "plugins", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ntc", 1)])
    onnx.save(model, spec["onnx"])
    try:
        entry = build_engine(spec["onnx"], spec["target"], spec["precision"], spec["out_dir"], plugin_lib=spec["lib"],
                             profiles=spec.get("profiles"))
        print(json.dumps({"outputs": entry["outputs"], "plugins": entry["plugins"],
                          "layers": [l["type"] for l in entry["layers"]]}))
    except NtcError as exc:
        print(json.dumps({"error": str(exc), "log": [m for lg in loggers for m in lg.errors()]}))
""")


def _build_with_library(lib: Path, tmp_path: Path, name: str, **spec) -> dict:
    spec.update(lib=str(lib), onnx=str(tmp_path / f"{name}.{spec['precision']}.onnx"), out_dir=str(tmp_path / "out"))
    proc = _run([sys.executable, "-c", _BUILD_SCRIPT, json.dumps(spec)], cwd=tmp_path)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # Where the plugin's own message went: TensorRT's logger (11.x headers) or stderr (10.x headers).
    result["messages"] = "\n".join([result.get("error", ""), *result.get("log", []), proc.stderr])
    return result


def _bc_spec(fmt, layout, dtype, blocks_shape, words):
    out = "float32" if dtype == "float32" else "float16"
    return dict(op="BcDecode", inputs=["blocks"], attrs=dict(format=fmt, layout=layout, dtype=dtype),
                input_specs=[("blocks", "int32", blocks_shape[:3] + [words])], out=out,
                precision="fp32" if dtype == "float32" else "fp16")


def _attn_spec(bw, heads, window, head_dim, n_windows, dtype, shift=1, mask_tokens=None):
    t = window * window
    shapes = [[bw, heads, t, head_dim]] * 3 + [[(2 * window - 1) ** 2, heads], [n_windows, t, mask_tokens or t]]
    return dict(op="WindowAttention", inputs=["q", "k", "v", "bias_table", "mask"],
                attrs=dict(heads=heads, window=window, shift=shift, scale=0.5),
                input_specs=[(n, dtype, s) for n, s in zip(["q", "k", "v", "bias_table", "mask"], shapes)], out=dtype,
                precision="fp32" if dtype == "float32" else "fp16")


def _assert_cpp_plugin(result: dict, op: str):
    assert [(p["op"], p["provider"], p["library"], p["nodes"]) for p in result["plugins"]] == \
        [(op, "embedded_library", "libntc_trt_plugins.so", 1)]
    assert "custom_layer" in result["layers"]


def test_cpp_library_builds_the_python_creator_engines(trt_plugin_lib, tmp_path):
    # The same two engines tests/backend/test_engine_build.py builds with the Python creators, same expected shapes.
    by, bx, heads, window, head_dim, n_windows, bw = 3, 5, 2, 2, 4, 3, 6
    bc = _build_with_library(trt_plugin_lib, tmp_path, "bc", target="rtx-blackwell",
                             **_bc_spec("bc7", "tokens", "float32", [2, by, bx], 4))
    assert bc["outputs"] == [{"name": "out", "shape": [2, 16 * by * bx, 4], "dtype": "fp32"}]
    _assert_cpp_plugin(bc, "ntc::BcDecode")
    attn = _build_with_library(trt_plugin_lib, tmp_path, "attn", target="rtx-ada",
                               **_attn_spec(bw, heads, window, head_dim, n_windows, "float16"))
    assert attn["outputs"] == [{"name": "out", "shape": [bw, window * window, heads * head_dim], "dtype": "fp16"}]
    _assert_cpp_plugin(attn, "ntc::WindowAttention")


def test_cpp_library_dynamic_shapes(trt_plugin_lib, tmp_path):
    # Symbolic B/by/bx and BW exercise the adapters' shape expressions: [B, C, 4by, 4bx] and [BW, T, heads*hd].
    spec = _bc_spec("bc5", "nchw", "float16", [-1, -1, -1], 4)
    spec["input_specs"] = [("blocks", "int32", ["B", "by", "bx", 4])]
    bc = _build_with_library(trt_plugin_lib, tmp_path, "bc5", target="rtx-ampere",
                             profiles={"blocks": [[1, 1, 1, 4], [2, 3, 4, 4], [4, 8, 8, 4]]}, **spec)
    assert bc["outputs"] == [{"name": "out", "shape": [-1, 2, -1, -1], "dtype": "fp16"}]
    _assert_cpp_plugin(bc, "ntc::BcDecode")
    spec = _attn_spec(4, 3, 7, 32, 4, "float32")
    spec["input_specs"] = [(n, d, ["BW", 3, 49, 32] if n in ("q", "k", "v") else s) for n, d, s in spec["input_specs"]]
    qkv_profile = [[4, 3, 49, 32], [8, 3, 49, 32], [16, 3, 49, 32]]
    attn = _build_with_library(trt_plugin_lib, tmp_path, "attn_dyn", target="rtx-ada",
                               profiles={n: qkv_profile for n in "qkv"}, **spec)
    assert attn["outputs"] == [{"name": "out", "shape": [-1, 49, 96], "dtype": "fp32"}]
    _assert_cpp_plugin(attn, "ntc::WindowAttention")


def test_cpp_library_rejects_contract_violations(trt_plugin_lib, tmp_path):
    # shift must lie in [0, window): the C++ creator refuses the node, so the parse fails with an error.
    bad_shift = _build_with_library(trt_plugin_lib, tmp_path, "bad_shift", target="rtx-ada",
                                    **_attn_spec(6, 2, 2, 4, 3, "float16", shift=2))
    # The node check before parsing refuses it with the contract's one-line reason.
    assert "WindowAttention" in bad_shift["error"]
    assert "need 0 <= shift < window (got shift 2, window 2)" in bad_shift["error"] + bad_shift["messages"]
    # A mask whose last dim is not T fails the plugin's input check (configurePlugin) at build time.
    bad_mask = _build_with_library(trt_plugin_lib, tmp_path, "bad_mask", target="rtx-ada",
                                   **_attn_spec(6, 2, 2, 4, 3, "float16", mask_tokens=5))
    assert "building bad_mask for rtx-ada (fp16) failed" in bad_mask["error"]
    assert "mask dim 2 is 5, expected 4 (T)" in bad_mask["messages"]
    # W = 2 words for a 16-byte format: the output shape rule refuses it.
    bad_words = _build_with_library(trt_plugin_lib, tmp_path, "bad_words", target="rtx-ampere",
                                    **_bc_spec("bc7", "tokens", "float32", [1, 2, 2], 2))
    assert "bad_words.fp32.onnx" in bad_words["error"] and "BcDecode" in bad_words["error"]
    assert "ntc::BcDecode bc7: W must be 4, got 2" in bad_words["messages"]
