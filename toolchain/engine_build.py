"""Ahead-of-time TensorRT-RTX engine builds for one target and precision, with a manifest and an engine cache.

TensorRT-RTX networks are strongly typed: precision comes from the ONNX (fp16 -> an fp16-typed ONNX, int8/fp8 ->
a Q/DQ ONNX), never from builder flags. Each engine is compiled for the target's compute capability only, so it
builds on a machine without a GPU.
"""

import fcntl
import hashlib
import json
import logging
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import onnx

from . import build_log, trt_env, trt_plugins
from .atomic import write_bytes, write_json
from .errors import NtcError
from .targets import TargetProfile, check_precision, get_target

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = 1
STANDARD_DOMAINS = ("", "ai.onnx")
# Default profile for the "tokens" input [B, N, D]: batch and square grid side, as (min, opt, max).
DEFAULT_BATCH = (1, 1, 8)
DEFAULT_GRID = (16, 16, 32)
# Bumped when build settings change so old cache entries stop matching.
BUILD_SETTINGS_VERSION = 1


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_name(onnx_path) -> str:
    """"model" for model.fp16.onnx / model.int8.onnx / model.onnx."""
    stem = Path(onnx_path).name.removesuffix(".onnx")
    base, _, last = stem.rpartition(".")
    return base if base and last in ("fp32", "fp16", "bf16", "int8", "fp8", "qdq") else stem


def onnx_precision(model: onnx.ModelProto) -> str:
    """The precision an ONNX is typed for: fp8/int8 when it carries Q/DQ, else the dominant float weight type."""
    tp = onnx.TensorProto
    graph = model.graph
    elem_types = [t.data_type for t in graph.initializer]
    elem_types += [v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info, *graph.output]]
    elem_types += [a.i for n in graph.node for a in n.attribute if a.name in ("to", "output_dtype")]
    if any(t in (tp.FLOAT8E4M3FN, tp.FLOAT8E4M3FNUZ, tp.FLOAT8E5M2, tp.FLOAT8E5M2FNUZ) for t in elem_types):
        return "fp8"
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node):
        return "int8"
    counts = {tp.FLOAT: 0, tp.FLOAT16: 0, tp.BFLOAT16: 0}
    for init in graph.initializer:
        if init.data_type in counts:
            counts[init.data_type] += max(1, int(_volume(init.dims)))
    if not any(counts.values()):
        for v in [*graph.input, *graph.output]:
            t = v.type.tensor_type.elem_type
            if t in counts:
                counts[t] += 1
    best = max(counts, key=counts.get)
    return {tp.FLOAT: "fp32", tp.FLOAT16: "fp16", tp.BFLOAT16: "bf16"}[best] if counts[best] else "fp32"


def _volume(dims) -> int:
    v = 1
    for d in dims:
        v *= d
    return v


def custom_ops(model: onnx.ModelProto) -> dict[str, int]:
    """'domain::op' -> node count for every node outside the standard ONNX domain; validates ntc nodes."""
    found: dict[str, int] = {}
    for node in model.graph.node:
        if node.domain in STANDARD_DOMAINS:
            continue
        if node.domain != trt_plugins.NAMESPACE:
            raise NtcError(f"unknown custom op {node.domain}::{node.op_type} (node {node.name or node.output[0]!r}): "
                           f"TensorRT has no plugin for domain {node.domain!r}")
        trt_plugins.validate_node(node)
        key = f"{node.domain}::{node.op_type}"
        found[key] = found.get(key, 0) + 1
    return found


def mark_fp32_attention_decomposable(model: onnx.ModelProto) -> int:
    """Add TRT_decomposable=1 to ONNX Attention nodes with fp32 Q (fp32 graphs, and the float islands of Q/DQ
    graphs): TensorRT-RTX has no fused fp32 attention kernel and refuses the build otherwise. Returns how many
    nodes changed. Build-only: onnx.checker rejects the attribute."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.value_info, *inferred.input, *inferred.output]}
    changed = 0
    for node in model.graph.node:
        if node.op_type == "Attention" and node.domain in STANDARD_DOMAINS and \
                types.get(node.input[0]) == onnx.TensorProto.FLOAT and \
                not any(a.name == "TRT_decomposable" for a in node.attribute):
            node.attribute.append(onnx.helper.make_attribute("TRT_decomposable", 1))
            changed += 1
    return changed


def token_profile(dim: int, batch=DEFAULT_BATCH, grid=DEFAULT_GRID) -> dict[str, list[list[int]]]:
    """min/opt/max shapes of the "tokens" input [B, grid*grid, D]."""
    if len(batch) != 3 or len(grid) != 3 or list(batch) != sorted(batch) or list(grid) != sorted(grid):
        raise NtcError(f"batch {tuple(batch)} and grid {tuple(grid)} must each be min <= opt <= max")
    return {"tokens": [[int(b), int(g) * int(g), int(dim)] for b, g in zip(batch, grid)]}


def input_profiles(inputs: list[tuple[str, list[int]]], profiles: dict | None, batch=DEFAULT_BATCH,
                   grid=DEFAULT_GRID) -> dict[str, list[list[int]]]:
    """A min/opt/max triple for each dynamic input (name, shape with -1 for dynamic axes): given ones, the tokens
    default, else an error."""
    given = dict(profiles or {})
    chosen = {}
    for name, shape in inputs:
        if name in given:
            chosen[name] = _check_profile(name, shape, given.pop(name))
        elif any(d < 0 for d in shape):
            if name == "tokens" and len(shape) == 3 and shape[2] > 0:
                chosen[name] = token_profile(shape[2], batch, grid)["tokens"]
            else:
                raise NtcError(f"input {name!r} has dynamic shape {shape}: give its min/opt/max profile")
    if given:
        raise NtcError(f"profiles given for inputs the model lacks: {', '.join(given)}")
    return chosen


def onnx_inputs(model: onnx.ModelProto) -> list[tuple[str, list[int]]]:
    """(name, shape) of the graph inputs that are not initializers; -1 marks a dynamic axis."""
    inits = {i.name for i in model.graph.initializer}
    return [(v.name, [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim])
            for v in model.graph.input if v.name not in inits]


def _check_profile(name: str, shape: list[int], triple) -> list[list[int]]:
    triple = [list(map(int, s)) for s in triple]
    if len(triple) != 3 or any(len(s) != len(shape) for s in triple):
        raise NtcError(f"profile for {name!r} must be three shapes of rank {len(shape)}, got {triple}")
    for axis, d in enumerate(shape):
        lo, opt, hi = (s[axis] for s in triple)
        if not 0 < lo <= opt <= hi or (d >= 0 and not lo == opt == hi == d):
            raise NtcError(f"profile for {name!r} axis {axis}: need 0 < min <= opt <= max matching {shape}")
    return triple


@contextmanager
def _manifest_lock(engines_dir: Path):
    with open(engines_dir / ".manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def read_manifest(out_dir) -> dict:
    path = Path(out_dir) / "engines" / "manifest.json"
    if not path.exists():
        return {"schema": MANIFEST_SCHEMA, "engines": []}
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise NtcError(f"{path}: corrupt manifest ({e}); delete it to rebuild") from None
    manifest.setdefault("engines", [])
    return manifest


def update_manifest(out_dir, entry: dict) -> None:
    """Insert or replace the entry with the same (model, target, precision, kind), atomically under a lock."""
    engines_dir = Path(out_dir) / "engines"
    key = (entry["model"], entry["target"], entry["precision"], entry.get("kind", "engine"))
    with _manifest_lock(engines_dir):
        manifest = read_manifest(out_dir)
        kept = [e for e in manifest["engines"]
                if (e["model"], e["target"], e["precision"], e.get("kind", "engine")) != key]
        manifest["engines"] = sorted(kept + [entry], key=lambda e: (e["model"], e["target"], e["precision"]))
        write_json(engines_dir / "manifest.json", manifest)


def _prepare_out(out_dir, target: TargetProfile) -> Path:
    """Create <out>/engines/<target>; NtcError when it cannot be written."""
    path = Path(out_dir) / "engines" / target.name
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe"):
            pass
    except OSError as e:
        raise NtcError(f"cannot write engines under {out_dir}: {e.strerror or e}") from None
    return path


def _cached_entry(out_dir, name, target, precision, cache_key) -> dict | None:
    for entry in read_manifest(out_dir)["engines"]:
        if (entry.get("kind", "engine"), entry["model"], entry["target"], entry["precision"]) != \
                ("engine", name, target, precision) or entry.get("cache_key") != cache_key:
            continue
        engine = Path(out_dir) / "engines" / entry["engine"]
        if engine.is_file() and sha256_file(engine) == entry["sha256"]:
            return entry
    return None


def _layer_summary(trt, engine_bytes: bytes, logger) -> tuple[list[dict], str]:
    """Per-layer summary from the engine inspector where the engine deserializes (a matching GPU), else the log."""
    quiet = build_log.make_capture_logger(trt)
    try:
        engine = trt.Runtime(quiet).deserialize_cuda_engine(engine_bytes)
    except Exception:  # no CUDA driver: the runtime cannot even start
        engine = None
    if engine is not None:
        inspector = engine.create_engine_inspector()
        layers = build_log.layers_from_inspector(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
        if layers:
            return layers, "engine_inspector"
    return build_log.layers_from_log(logger.text()), "builder_log"


def _tensor_record(tensor) -> dict:
    """Name, shape (-1 for dynamic axes) and dtype of a network input or output."""
    dtype = build_log.normalize_dtype(str(tensor.dtype).rsplit(".", 1)[-1])
    return {"name": tensor.name, "shape": list(tensor.shape), "dtype": dtype}


def load_onnx_for(onnx_path, precision: str) -> onnx.ModelProto:
    """The ONNX graph (weights not loaded), checked to be typed for `precision` (strongly typed builds)."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise NtcError(f"{onnx_path}: no such ONNX file")
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:  # protobuf raises its own DecodeError
        raise NtcError(f"{onnx_path}: not a readable ONNX model ({str(e)[:200]})") from None
    typed = onnx_precision(model)
    if precision != "fp32" and typed != precision:
        raise NtcError(f"{onnx_path.name} is {typed}-typed but precision {precision} was asked: engines build "
                       f"strongly typed, so pass the {precision} ONNX (fp16/bf16: a converted model, int8/fp8: Q/DQ)")
    if precision == "fp32" and typed != "fp32":
        raise NtcError(f"{onnx_path.name} is {typed}-typed, not fp32: pass the fp32 ONNX or ask for {typed}")
    return model


_loaded_libraries: dict[str, object] = {}


def _load_plugin_library(trt, plugin_lib: Path) -> None:
    """Load a C++ plugin library once per process (a second load_library of the same path returns None)."""
    key = str(plugin_lib.resolve())
    registry = trt.get_plugin_registry()
    if key in _loaded_libraries:
        registry.deregister_library(_loaded_libraries.pop(key))
    handle = registry.load_library(key)
    if handle is None:
        raise NtcError(f"{plugin_lib}: TensorRT could not load it as a plugin library (needs getCreators)")
    _loaded_libraries[key] = handle


def build_engine(onnx_path, target, precision: str, out_dir, profiles: dict | None = None, plugin_lib=None,
                 batch=DEFAULT_BATCH, grid=DEFAULT_GRID, name: str | None = None) -> dict:
    """Build `<out>/engines/<target>/<model>.<precision>.engine` for a tensorrt_rtx target; returns its manifest entry
    plus "cache" ("hit" or "miss") and "engine_path". `profiles`: input name -> [min, opt, max] shapes."""
    target = check_precision(get_target(target), precision)
    if target.backend != "tensorrt_rtx":
        raise NtcError(f"{target.name} builds with TensorRT on the device ({target.trt_range}): "
                       "write a deploy bundle instead (ntc_export.jetson_bundle.write_bundle)")
    onnx_path = Path(onnx_path)
    model = load_onnx_for(onnx_path, precision)
    ops = custom_ops(model)
    rewrites = []
    if n_attention := mark_fp32_attention_decomposable(model):
        rewrites.append(f"TRT_decomposable=1 on {n_attention} fp32 Attention node(s)")
    plugin_lib = Path(plugin_lib) if plugin_lib else None
    if plugin_lib is not None and not plugin_lib.is_file():
        raise NtcError(f"plugin library {plugin_lib} not found (build it: cmake -S plugins -B plugins/build "
                       "-DTensorRT_ROOT=<TensorRT dir> && cmake --build plugins/build -j)")
    engines_dir = _prepare_out(out_dir, target)
    name = name or model_name(onnx_path)
    version = trt_env.version_info(target.backend)
    onnx_sha = sha256_file(onnx_path)
    lib_sha = sha256_file(plugin_lib) if plugin_lib else None
    key_parts = {"onnx": onnx_sha, "target": target.name, "sm": target.sm, "precision": precision,
                 "trt": version, "plugin_lib": lib_sha, "profiles": profiles, "batch": list(batch),
                 "grid": list(grid), "settings": BUILD_SETTINGS_VERSION}
    cache_key = hashlib.sha256(json.dumps(key_parts, sort_keys=True, default=str).encode()).hexdigest()
    hit = _cached_entry(out_dir, name, target.name, precision, cache_key)
    if hit is not None:
        log.info("engine cache hit for %s %s %s: build skipped", name, target.name, precision)
        return {**hit, "cache": "hit", "engine_path": str(Path(out_dir) / "engines" / hit["engine"])}

    trt = trt_env.import_backend(target.backend)
    logger = build_log.make_capture_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    config = builder.create_builder_config()
    if plugin_lib is not None:
        trt_plugins.deregister_creators(trt)
        _load_plugin_library(trt, plugin_lib)
        # The plugin library travels inside the engine, so running it needs no separate plugin set-up.
        config.plugins_to_serialize = [str(plugin_lib)]
    elif ops:
        trt_plugins.register_creators(trt)
    parser = trt.OnnxParser(network, logger)
    # A rewritten graph is parsed from memory; the path still locates external weights beside the ONNX.
    parsed = (parser.parse(model.SerializeToString(), str(onnx_path)) if rewrites
              else parser.parse_from_file(str(onnx_path)))
    if not parsed:
        errors = [str(parser.get_error(i)).strip() for i in range(parser.num_errors)]
        detail = errors[0].splitlines()[0][:400] if errors else "no detail"
        logged = "; ".join(e.splitlines()[0][:200] for e in logger.errors()[:3])  # plugins explain themselves here
        raise NtcError(f"{onnx_path.name}: the TensorRT ONNX parser failed: {detail}"
                       + (f" ({logged})" if logged else ""))
    chosen = input_profiles([(network.get_input(i).name, list(network.get_input(i).shape))
                             for i in range(network.num_inputs)], profiles, batch, grid)
    if chosen:
        profile = builder.create_optimization_profile()
        for input_name, (lo, opt, hi) in chosen.items():
            profile.set_shape(input_name, lo, opt, hi)
        config.add_optimization_profile(profile)
    config.num_compute_capabilities = 1
    config.set_compute_capability(getattr(trt.ComputeCapability, target.compute_capability), 0)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    workspace = target.memory_budget_bytes // 4
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        errors = logger.errors()
        raise NtcError(f"building {name} for {target.name} ({precision}) failed: "
                       f"{errors[-1].splitlines()[0][:400] if errors else 'no error logged'}")
    engine_bytes = bytes(serialized)
    engine_path = engines_dir / f"{name}.{precision}.engine"
    write_bytes(engine_path, engine_bytes)
    layers, source = _layer_summary(trt, engine_bytes, logger)
    write_bytes(engines_dir / f"{name}.{precision}.build.log", logger.text().encode())

    how = ({"provider": "embedded_library", "library": plugin_lib.name, "library_sha256": lib_sha}
           if plugin_lib else {"provider": "python_creators", "module": "ntc_export.trt_plugins",
                               "note": "register_creators(trt) in the running process before deserializing"})
    entry = {
        "kind": "engine",
        "model": name,
        "target": target.name,
        "sm": target.sm,
        "backend": target.backend,
        "backend_version": version["version"],
        "onnx_parser_version": version.get("onnx_parser_version"),
        "precision": precision,
        "onnx": str(onnx_path.resolve()),
        "onnx_sha256": onnx_sha,
        "engine": str(engine_path.relative_to(Path(out_dir) / "engines")),
        "engine_bytes": len(engine_bytes),
        "sha256": hashlib.sha256(engine_bytes).hexdigest(),
        "build_seconds": round(seconds, 3),
        "workspace_bytes": workspace,
        "cache_key": cache_key,
        "profiles": chosen,
        "inputs": [_tensor_record(network.get_input(i)) for i in range(network.num_inputs)],
        "outputs": [_tensor_record(network.get_output(i)) for i in range(network.num_outputs)],
        "plugins": [{"op": op, "version": trt_plugins.VERSION, "nodes": n, **how} for op, n in sorted(ops.items())],
        "build_rewrites": rewrites,
        "layer_summary_source": source,
        "layer_summary": build_log.summarize(layers),
        "layers": layers,
        "build_log": f"{target.name}/{name}.{precision}.build.log",
    }
    update_manifest(out_dir, entry)
    return {**entry, "cache": "miss", "engine_path": str(engine_path)}
