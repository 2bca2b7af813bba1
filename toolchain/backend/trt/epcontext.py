"""ONNX Runtime EPContext models for TensorRT-RTX engines: `<model>.<precision>.ctx.onnx` beside each engine.

An RTX application running ONNX Runtime (Windows ML among them) with the TensorRT-RTX execution provider loads such
a model and runs the precompiled engine inside it, nothing compiled on the user's machine. The model is one
`EPContext` node (domain com.microsoft) whose graph inputs and outputs are the engine's I/O tensors (names, types,
dims; dynamic dims symbolic). Sources read for it, in github.com/microsoft/onnxruntime:
- the schema: onnxruntime/core/graph/contrib_ops/contrib_defs.cc (EPContext); the installed onnxruntime reports
  the same schema through get_all_operator_schema, which `contrib_schema` reads and `check_context_model` applies;
- the provider's reader: onnxruntime/core/providers/nv_tensorrt_rtx/onnx_ctx_model_helper.{h,cc}
  (TensorRTCacheModelHandler::GetEpContextFromGraph / ValidateEPCtxNode) and its writer CreateCtxNode there;
- ORT's wrapper of a TensorRT engine: onnxruntime/python/tools/tensorrt/gen_trt_engine_wrapper_onnx_model.py.
"""

import hashlib
import json
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from ...util.atomic import write_bytes
from ...util.errors import NtcError
from . import build_log
from . import env as trt_env
from .manifest import update_manifest

# kNvTensorRTRTXExecutionProvider (onnxruntime/core/graph/constants.h): the provider's type, the `source` it writes
# and the suffix of its compatibility metadata key.
EP_NAME = "NvTensorRTRTXExecutionProvider"
DOMAIN = "com.microsoft"
OP = "EPContext"
# ORT passes this metadata value (hex of the engine header) to the provider before loading, which checks it with
# IRuntime::getEngineValidity (nv_provider_factory.cc): a wrong runtime release or GPU fails in one line.
COMPAT_KEY = f"ep_compatibility_info.{EP_NAME}"
# Embedded up to 1 MiB: one file, and the copy ORT holds in host memory (the node attribute) stays small; larger
# engines are named (embed_mode=0): no second copy on disk, the provider maps the file, far below protobuf's 2 GiB.
EMBED_MAX_BYTES = 1 << 20

# Our dtype names (build_log.normalize_dtype) -> ONNX element types.
ONNX_TYPES = {
    "fp32": TensorProto.FLOAT, "fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16, "int8": TensorProto.INT8,
    "uint8": TensorProto.UINT8, "int32": TensorProto.INT32, "int64": TensorProto.INT64, "bool": TensorProto.BOOL,
    "fp8": TensorProto.FLOAT8E4M3FN, "int4": TensorProto.INT4,
}


def context_path(engine_path) -> Path:
    """`<model>.<precision>.ctx.onnx` beside `<model>.<precision>.engine`."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name.removesuffix(".engine") + ".ctx.onnx")


def type_string(elem_type: int) -> str:
    """ONNX's type string of a tensor element type, as schemas spell it: tensor(float16), tensor(float8e4m3fn)."""
    return f"tensor({TensorProto.DataType.Name(elem_type).lower()})"


def contrib_schema() -> dict | None:
    """The installed onnxruntime's EPContext schema: {"attributes": name -> onnx AttributeProto type, "types": the
    tensor types its inputs and outputs admit}; None where this onnxruntime build does not expose schemas."""
    try:
        from onnxruntime.capi.onnxruntime_pybind11_state import get_all_operator_schema
    except ImportError:
        return None
    found = [s for s in get_all_operator_schema() if s.name == OP and s.domain == DOMAIN]
    if not found:
        return None
    schema = max(found, key=lambda s: s.since_version)
    attributes = {name: onnx.AttributeProto.AttributeType.Value(a.type.name) for name, a in schema.attributes.items()}
    types = {t for c in schema.type_constraints for t in c.allowed_type_strs}
    return {"attributes": attributes, "types": types, "since_version": schema.since_version}


def engine_io(backend: str, engine_bytes: bytes) -> tuple[list[dict], list[dict]] | None:
    """(inputs, outputs) as the deserialized engine reports them, records like the manifest's (name, shape with -1
    for dynamic axes, dtype); None where it does not deserialize here (no GPU of the engine's SM)."""
    trt = trt_env.import_backend(backend)
    try:
        engine = trt.Runtime(build_log.make_capture_logger(trt)).deserialize_cuda_engine(engine_bytes)
    except Exception:  # no CUDA driver: the runtime cannot even start
        return None
    if engine is None:
        return None
    io: tuple[list[dict], list[dict]] = ([], [])
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        dtype = build_log.normalize_dtype(str(engine.get_tensor_dtype(name)).rsplit(".", 1)[-1])
        record = {"name": name, "shape": list(engine.get_tensor_shape(name)), "dtype": dtype}
        io[0 if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else 1].append(record)
    return io


def engine_header_size(backend: str) -> int | None:
    """Bytes of the engine header the runtime validates an engine by (IRuntime::getEngineHeaderSize), or None."""
    trt = trt_env.import_backend(backend)
    try:
        return int(trt.Runtime(build_log.make_capture_logger(trt)).engine_header_size)
    except Exception:  # a runtime release without the call, or none that starts here
        return None


def onnx_dim_names(onnx_path) -> dict[str, list[str | None]]:
    """Tensor name -> the symbolic name of each axis (None where static or unnamed) in the ONNX the engine was built
    from; {} where that file is gone (a Ray worker's copy, say)."""
    path = Path(onnx_path) if onnx_path else None
    if path is None or not path.is_file():
        return {}
    graph = onnx.load(str(path), load_external_data=False).graph
    return {v.name: [d.dim_param or None for d in v.type.tensor_type.shape.dim] for v in [*graph.input, *graph.output]}


def _value_info(record: dict, dim_names: dict) -> onnx.ValueInfoProto:
    """A graph input/output typed and shaped as the engine's tensor; a dynamic axis keeps the source ONNX's name."""
    if record["dtype"] not in ONNX_TYPES:
        raise NtcError(f"engine tensor {record['name']!r} has type {record['dtype']}, which ONNX cannot express")
    names = dim_names.get(record["name"], [])
    dims = [d if d >= 0 else (names[axis] if axis < len(names) and names[axis] else f"{record['name']}_{axis}")
            for axis, d in enumerate(record["shape"])]
    return helper.make_tensor_value_info(record["name"], ONNX_TYPES[record["dtype"]], dims)


def plugin_routes(plugins: list[dict]) -> list[dict]:
    """How an app runs each custom op inside the engine (ntc::BcDecode before a bc_autoencoder decoder, ...)."""
    routes = []
    for p in plugins:
        if p.get("provider") == "embedded_library":
            # IBuilderConfig.plugins_to_serialize (build.py): the library is inside the engine, and the provider's
            # options (include/onnxruntime/core/providers/nv_tensorrt_rtx/nv_provider_options.h) name no plugin
            # library to load, so this is the route that works through ONNX Runtime.
            routes.append({"op": p["op"], "route": "library_in_engine", "library": p["library"],
                           "library_sha256": p.get("library_sha256"),
                           "how": f"TensorRT-RTX loads {p['library']} from inside the engine when the provider "
                                  "deserializes it; the app sets nothing. The library is the one given at build "
                                  "time: an app on another OS needs an engine built with that OS's build of it."})
        else:
            routes.append({"op": p["op"], "route": "python_creators", "module": "ntc_export.ops.trt_registry",
                           "how": "the engine looks the op up in the process's TensorRT-RTX plugin registry, where "
                                  "only ntc_export's Python creators put it (register_creators before the session); "
                                  "apps without Python: rebuild with --plugin-lib libntc_trt_plugins.so so the "
                                  "library travels inside the engine."})
    return routes


def _notes(entry: dict, engine_name: str, io_source: str) -> dict:
    """What an app developer needs beside the engine: the runtime release it needs, the shapes it takes, its ops."""
    notes = {"producer": "ntc-export", "model": entry["model"], "target": entry["target"], "sm": entry["sm"],
             "precision": entry["precision"], "tensorrt_rtx": entry["backend_version"], "engine": engine_name,
             "engine_sha256": entry["sha256"], "io_source": io_source, "profiles": entry.get("profiles") or {},
             "plugins": plugin_routes(entry.get("plugins", []))}
    if entry.get("int8_interface"):
        notes["int8_interface"] = entry["int8_interface"]  # scales of int8 inputs/outputs the app feeds and reads
    return notes


def context_model(entry: dict, engine_bytes: bytes, embed: bool, io: tuple[list[dict], list[dict]],
                  io_source: str, dim_names: dict | None = None, header_size: int | None = None) -> onnx.ModelProto:
    """The EPContext model of manifest entry `entry`'s engine (`engine_bytes`): embedded or by file name."""
    engine_name = Path(entry["engine"]).name
    # The provider names its runtime cache after partition_name, so a rebuilt engine gets a name of its own.
    partition = f"{entry['model']}_{entry['precision']}_{entry['target']}_{entry['sha256'][:16]}".replace(".", "_")
    node = helper.make_node(
        OP, [r["name"] for r in io[0]], [r["name"] for r in io[1]], name=partition, domain=DOMAIN,
        # contrib_defs.cc: the node holding ep_cache_context sets main_context=1 (0 only for nodes sharing it).
        main_context=1,
        embed_mode=int(embed),
        # Embedded bytes, or a file name relative to this model: the reader refuses absolute paths and "..".
        ep_cache_context=engine_bytes if embed else engine_name,
        # The TensorRT-RTX release that built the engine: engines deserialize only with that runtime release.
        ep_sdk_version=entry["backend_version"],
        # The reader compares it with the GPU's major*10+minor (nv_execution_provider_utils.h GetComputeCapability).
        hardware_architecture=str(entry["sm"]),
        onnx_model_filename=Path(entry.get("onnx") or "").name,
        partition_name=partition,
        source=EP_NAME,
        notes=json.dumps(_notes(entry, engine_name, io_source), sort_keys=True))
    dim_names = dim_names or {}
    graph = helper.make_graph([node], f"{entry['model']}_{entry['precision']}_{entry['target']}",
                              [_value_info(r, dim_names) for r in io[0]], [_value_info(r, dim_names) for r in io[1]])
    opsets = [helper.make_opsetid(DOMAIN, 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="ntc-export",
                              ir_version=helper.find_min_ir_version_for(opsets, ignore_unknown=True))
    if header_size:
        helper.set_model_props(model, {COMPAT_KEY: engine_bytes[:header_size].hex()})
    return model


def check_context_model(model: onnx.ModelProto, schema: dict | None = None) -> None:
    """onnx.checker, then the EPContext node against ONNX Runtime's contrib schema (attribute names and types, the
    tensor types of its inputs and outputs); a one-line NtcError naming the first violation."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise NtcError(f"context model {model.graph.name}: onnx.checker: {str(e).splitlines()[0]}") from None
    schema = schema if schema is not None else contrib_schema()
    if schema is None:
        return
    (node,) = model.graph.node
    for attr in node.attribute:
        expected = schema["attributes"].get(attr.name)
        if expected is None:
            raise NtcError(f"context model {model.graph.name}: EPContext has no attribute {attr.name!r}")
        if attr.type != expected:
            raise NtcError(f"context model {model.graph.name}: EPContext attribute {attr.name} is "
                           f"{onnx.AttributeProto.AttributeType.Name(attr.type)}, the schema says "
                           f"{onnx.AttributeProto.AttributeType.Name(expected)}")
    for v in [*model.graph.input, *model.graph.output]:
        if type_string(v.type.tensor_type.elem_type) not in schema["types"]:
            raise NtcError(f"context model {model.graph.name}: EPContext admits no "
                           f"{type_string(v.type.tensor_type.elem_type)} (tensor {v.name!r}); "
                           f"it takes {', '.join(sorted(schema['types']))}")


def write_epcontext(entry: dict, out_dir, embed_max_bytes: int = EMBED_MAX_BYTES) -> dict:
    """Write the EPContext model of a built engine (`entry`: its manifest entry or build_engine's result) beside it,
    record it in the entry's manifest entry and return that record."""
    if entry.get("kind", "engine") != "engine" or entry.get("backend") != "tensorrt_rtx":
        raise NtcError(f"{entry['model']} {entry['target']} {entry['precision']}: EPContext models wrap "
                       "TensorRT-RTX engines only")
    engines = Path(out_dir) / "engines"
    engine_path = engines / entry["engine"]
    try:
        data = engine_path.read_bytes()
    except OSError as e:
        raise NtcError(f"cannot read engine {engine_path}: {e.strerror or e}") from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise NtcError(f"{engine_path.name} does not match its manifest sha256; rebuild it")
    io = engine_io(entry["backend"], data)
    io_source = "engine" if io is not None else "builder"  # no GPU here: the network's I/O recorded at build time
    io = io or (entry["inputs"], entry["outputs"])
    embed = len(data) <= embed_max_bytes and len(data) < onnx.checker.MAXIMUM_PROTOBUF
    model = context_model(entry, data, embed, io, io_source, onnx_dim_names(entry.get("onnx")),
                          engine_header_size(entry["backend"]))
    check_context_model(model)
    path = context_path(engine_path)
    blob = model.SerializeToString()
    write_bytes(path, blob)
    record = {"path": str(path.relative_to(engines)), "embed_mode": int(embed), "bytes": len(blob),
              "sha256": hashlib.sha256(blob).hexdigest(), "source": EP_NAME,
              "ep_sdk_version": entry["backend_version"], "hardware_architecture": str(entry["sm"]),
              "io_source": io_source, "plugins": plugin_routes(entry.get("plugins", []))}
    stored = {k: v for k, v in entry.items() if k not in ("cache", "engine_path", "epcontext")}
    update_manifest(out_dir, {**stored, "epcontext": record})
    return record
