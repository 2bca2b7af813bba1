"""EPContext models beside TensorRT-RTX engines: ONNX Runtime's own schema, a CPU session that fails only for the
missing provider, graph I/O equal to the engine's, embed modes, plugin routes, the app example, the main job."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from ntc_export.util.errors import NtcError
from onnx import TensorProto, helper

pytest.importorskip("tensorrt_rtx_bindings")

from ntc_export.backend.trt import env as trt_env  # noqa: E402
from ntc_export.backend.trt.build import build_engine  # noqa: E402
from ntc_export.backend.trt.epcontext import (check_context_model, context_model, engine_io,  # noqa: E402
                                              plugin_routes, write_epcontext)
from ntc_export.backend.trt.manifest import read_manifest  # noqa: E402
from ntc_export.cli import main  # noqa: E402
from test_engine_build import _bc_node, _export_tiny, _plugin_model  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EP = "NvTensorRTRTXExecutionProvider"
TARGET, SM = "rtx-ada", 89


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The tiny fp16 model built for one RTX target by `ntc-export build --epcontext`."""
    folder = tmp_path_factory.mktemp("epcontext")
    _, fp16 = _export_tiny(folder)
    out = folder / "out"
    assert main(["build", str(fp16), "--target", TARGET, "--out", str(out), "--epcontext", "--json"]) == 0
    (entry,) = read_manifest(out)["engines"]
    engine = out / "engines" / entry["engine"]
    ctx = out / "engines" / entry["epcontext"]["path"]
    return {"fp16": fp16, "out": out, "entry": entry, "engine": engine, "ctx": ctx}


def _attrs(model: onnx.ModelProto) -> dict:
    (node,) = model.graph.node
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _ort_schema():
    """ONNX Runtime's registered EPContext schema (contrib op), straight from the installed onnxruntime."""
    from onnxruntime.capi.onnxruntime_pybind11_state import get_all_operator_schema

    (schema,) = [s for s in get_all_operator_schema() if s.name == "EPContext" and s.domain == "com.microsoft"]
    return schema


def _cpu_session_error(model_or_path) -> Exception:
    source = str(model_or_path) if isinstance(model_or_path, Path) else model_or_path.SerializeToString()
    with pytest.raises(Exception) as info:
        ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return info.value


def test_context_model_follows_onnx_runtimes_schema(built):
    model = onnx.load(str(built["ctx"]))
    onnx.checker.check_model(model, full_check=True)
    (node,) = model.graph.node
    assert (node.op_type, node.domain) == ("EPContext", "com.microsoft")
    schema = _ort_schema()
    assert {o.domain: o.version for o in model.opset_import} == {"com.microsoft": schema.since_version}
    # Every attribute is one the schema declares, with the schema's type (AttrType and ONNX spell them alike).
    for attr in node.attribute:
        assert attr.name in schema.attributes, attr.name
        assert onnx.AttributeProto.AttributeType.Name(attr.type) == schema.attributes[attr.name].type.name
    allowed = {t for c in schema.type_constraints for t in c.allowed_type_strs}
    for v in [*model.graph.input, *model.graph.output]:
        assert f"tensor({TensorProto.DataType.Name(v.type.tensor_type.elem_type).lower()})" in allowed
    attrs, data = _attrs(model), built["engine"].read_bytes()
    trt = trt_env.import_backend("tensorrt_rtx")
    # What the provider's reader takes: the engine bytes themselves (a 190 KB engine is embedded) ...
    assert attrs["embed_mode"] == 1 and attrs["ep_cache_context"] == data and attrs["main_context"] == 1
    # ... and what it and ORT compare: the GPU's major*10+minor, the provider, the runtime release that built it.
    assert attrs["hardware_architecture"] == str(SM).encode() and attrs["source"] == EP.encode()
    assert attrs["ep_sdk_version"].decode() == trt.__version__ == built["entry"]["backend_version"]
    header = trt.Runtime(trt.Logger(trt.Logger.ERROR)).engine_header_size
    props = {p.key: p.value for p in model.metadata_props}
    assert props == {f"ep_compatibility_info.{EP}": data[:header].hex()}
    notes = json.loads(attrs["notes"])
    assert notes["tensorrt_rtx"] == trt.__version__ and notes["engine_sha256"] == built["entry"]["sha256"]
    assert notes["profiles"] == built["entry"]["profiles"] and notes["plugins"] == []


def test_cpu_session_fails_only_for_the_missing_provider(built):
    error = _cpu_session_error(built["ctx"])
    # The model loads, resolves and type-checks against the contrib schema; only no kernel claims the node here.
    assert type(error).__name__ == "NotImplemented"
    assert "Failed to find kernel for com.microsoft.EPContext(1)" in str(error)
    assert "ep:'CPUExecutionProvider'" in str(error)
    # The same session does fail on structure when the structure is wrong: a mistyped attribute, a type the op
    # does not take.
    model = onnx.load(str(built["ctx"]))
    bad = onnx.ModelProto()
    bad.CopyFrom(model)
    embed = next(a for a in bad.graph.node[0].attribute if a.name == "embed_mode")
    embed.CopyFrom(helper.make_attribute("embed_mode", "1"))
    error = _cpu_session_error(bad)
    assert type(error).__name__ == "InvalidGraph" and "Mismatched attribute type" in str(error)
    bad.CopyFrom(model)
    bad.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT8E4M3FN
    error = _cpu_session_error(bad)
    assert type(error).__name__ == "InvalidGraph" and "Type Error" in str(error)
    with pytest.raises(NtcError, match=r"EPContext admits no tensor\(float8e4m3fn\) \(tensor 'tokens'\)"):
        check_context_model(bad)


def test_graph_io_matches_the_engine(built):
    entry, model = built["entry"], onnx.load(str(built["ctx"]))
    reported = engine_io("tensorrt_rtx", built["engine"].read_bytes())
    if reported is None:  # no GPU of the engine's SM: the engine does not deserialize, so the builder's record
        assert not torch.cuda.is_available() or torch.cuda.get_device_capability(0) != divmod(SM, 10)
        reported = (entry["inputs"], entry["outputs"])
        assert entry["epcontext"]["io_source"] == "builder"
    onnx_type = {"fp16": TensorProto.FLOAT16, "fp32": TensorProto.FLOAT}
    source = onnx.load(str(built["fp16"])).graph  # the exported graph: its own names, types and axis names
    for values, records, originals in ((model.graph.input, reported[0], source.input),
                                       (model.graph.output, reported[1], source.output)):
        assert [v.name for v in values] == [r["name"] for r in records] == [o.name for o in originals]
        for v, r, o in zip(values, records, originals):
            assert v.type.tensor_type.elem_type == onnx_type[r["dtype"]] == o.type.tensor_type.elem_type
            dims = v.type.tensor_type.shape.dim
            assert len(dims) == len(r["shape"])
            for d, n, od in zip(dims, r["shape"], o.type.tensor_type.shape.dim):
                # static axes as the engine's size, dynamic ones symbolic, named as in the exported ONNX
                if n >= 0:
                    assert (d.dim_value, d.dim_param) == (n, "") and od.dim_value == n
                else:
                    assert d.dim_value == 0 and d.dim_param == od.dim_param != ""
    assert [v.type.tensor_type.shape.dim[2].dim_value for v in model.graph.input] == [8]  # DIM of the tiny model


def test_large_engines_are_referenced_by_file_name(built, tmp_path):
    record = write_epcontext(built["entry"], built["out"], embed_max_bytes=0)
    model = onnx.load(str(built["ctx"]))
    attrs = _attrs(model)
    # The reader resolves the name beside the context model and refuses absolute paths and '..'.
    assert attrs["embed_mode"] == 0 and attrs["ep_cache_context"] == built["engine"].name.encode()
    assert (built["ctx"].parent / attrs["ep_cache_context"].decode()).read_bytes() == built["engine"].read_bytes()
    assert record["embed_mode"] == 0 and record["bytes"] == built["ctx"].stat().st_size < 4096
    (entry,) = read_manifest(built["out"])["engines"]
    assert entry["epcontext"] == record and entry["sha256"] == built["entry"]["sha256"]
    assert type(_cpu_session_error(built["ctx"])).__name__ == "NotImplemented"
    write_epcontext(built["entry"], built["out"])  # back to the default (embedded) for the other tests
    assert _attrs(onnx.load(str(built["ctx"])))["embed_mode"] == 1


def test_bc_decode_engine_says_how_an_app_runs_the_op(tmp_path):
    blocks = helper.make_tensor_value_info("blocks", TensorProto.INT32, [2, 3, 5, 4])
    bc = _plugin_model(tmp_path / "bc.fp32.onnx", [_bc_node()], [blocks],
                       [helper.make_tensor_value_info("image", TensorProto.FLOAT, None)])
    entry = build_engine(bc, "rtx-blackwell", "fp32", tmp_path / "out")
    record = write_epcontext(entry, tmp_path / "out")
    model = onnx.load(str(tmp_path / "out" / "engines" / record["path"]))
    check_context_model(model)
    assert [(v.name, [d.dim_value for d in v.type.tensor_type.shape.dim]) for v in model.graph.input] == [
        ("blocks", [2, 3, 5, 4])]
    assert [(v.name, [d.dim_value for d in v.type.tensor_type.shape.dim]) for v in model.graph.output] == [
        ("image", [2, 16 * 3 * 5, 4])]  # bc7 tokens layout, from the plugin's contract
    (route,) = json.loads(_attrs(model)["notes"])["plugins"]
    assert route["op"] == "ntc::BcDecode" and route["route"] == "python_creators"
    assert "--plugin-lib" in route["how"] and record["plugins"] == [route]
    assert type(_cpu_session_error(model)).__name__ == "NotImplemented"
    # With --plugin-lib the library is serialized into the engine: the app sets nothing, the notes name it.
    (embedded,) = plugin_routes([{"op": "ntc::BcDecode", "provider": "embedded_library",
                                  "library": "libntc_trt_plugins.so", "library_sha256": "ab" * 32}])
    assert embedded["route"] == "library_in_engine" and embedded["library"] == "libntc_trt_plugins.so"


def test_engine_types_outside_the_schema_are_refused(built):
    entry = built["entry"]
    fp8 = ([{**entry["inputs"][0], "dtype": "fp8"}], entry["outputs"])
    model = context_model(entry, b"engine", True, fp8, "builder")
    with pytest.raises(NtcError, match=r"admits no tensor\(float8e4m3fn\)"):
        check_context_model(model)
    with pytest.raises(NtcError, match="EPContext models wrap TensorRT-RTX engines only"):
        write_epcontext({**entry, "kind": "bundle"}, built["out"])


def test_app_example_falls_back_in_one_line(built):
    script = [sys.executable, str(REPO / "scripts" / "run_epcontext.py"), str(built["ctx"]), "--runs", "2"]
    if EP in ort.get_available_providers():
        pytest.skip("this onnxruntime has the TensorRT-RTX provider")
    result = subprocess.run(script, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and EP in result.stderr and result.stderr.startswith("cannot run")
    feeds = built["out"] / "feeds.npz"
    tokens = np.random.default_rng(1).standard_normal((2, 6, 8)).astype(np.float16)
    np.savez(feeds, tokens=tokens)
    result = subprocess.run([*script, "--fallback", str(built["fp16"]), "--feeds", str(feeds)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "running tiny.fp16.onnx on" in result.stderr and "out: [2, 6, 16] float16" in result.stdout


def test_main_job_writes_a_context_model_per_rtx_engine(tmp_path):
    from ntc_export.data.tokens import TokenSet
    from ntc_export.models import build, save

    torch.manual_seed(0)
    save(build("pixel_shuffle", {"input_dim": 48, "output_dim": 32, "num_classes": 4}), tmp_path / "tiny.pt")
    rng = np.random.default_rng(0)
    TokenSet(rng.standard_normal((4, 1 + 64, 48)).astype(np.float32), (8, 8), rng.integers(0, 4, 4),
             {"source": "test"}).save(tmp_path / "data.npz")
    assert main([str(tmp_path / "tiny.pt"), "--data", str(tmp_path / "data.npz"), "--out", str(tmp_path / "out"),
                 "--quiet", "--precision", "fp16", "--target", TARGET, "--pixel-route", "none", "--epcontext"]) == 0
    (entry,) = read_manifest(tmp_path / "out")["engines"]
    ctx = tmp_path / "out" / "engines" / entry["epcontext"]["path"]
    assert ctx.name == "tiny.fp16.ctx.onnx" and ctx.parent == (tmp_path / "out" / "engines" / entry["engine"]).parent
    model = onnx.load(str(ctx))
    check_context_model(model)
    assert [v.name for v in model.graph.input] == [r["name"] for r in entry["inputs"]]
    assert type(_cpu_session_error(ctx)).__name__ == "NotImplemented"
