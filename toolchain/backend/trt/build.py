"""Ahead-of-time TensorRT-RTX engine builds for one target and precision, with a manifest and an engine cache.

TensorRT-RTX networks are strongly typed: precision comes from the ONNX (fp16 -> an fp16-typed ONNX, int8/fp8 ->
a Q/DQ ONNX), never from builder flags. Each engine is compiled for the target's compute capability only, so it
builds on a machine without a GPU.
"""

import hashlib
import json
import logging
import tempfile
import time
from pathlib import Path

from ...ops import trt_registry
from ...ops.domain import VERSION as PLUGIN_VERSION
from ...ops.window_attention.lowering import mark_fp32_attention_decomposable
from ...util.atomic import write_bytes
from ...util.errors import NtcError
from ...util.hashing import sha256_file
from ..onnx.inspect import constant_bytes, custom_ops, load_onnx_for, model_name, onnx_inputs
from ..onnx.int8_io import interface_scales
from . import build_log
from . import env as trt_env
from .epcontext import context_path
from .manifest import cached_entry, update_manifest
from .profiles import DEFAULT_BATCH, DEFAULT_GRID, check_profiles, grid_triple, input_profiles
from .targets import TargetProfile, check_precision, get_target

log = logging.getLogger(__name__)

# Bumped when build settings change so old cache entries stop matching.
BUILD_SETTINGS_VERSION = 1


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


def _check_plugin_lib(plugin_lib) -> Path | None:
    plugin_lib = Path(plugin_lib) if plugin_lib else None
    if plugin_lib is not None and not plugin_lib.is_file():
        raise NtcError(f"plugin library {plugin_lib} not found (build it: cmake -S plugins -B plugins/build "
                       "-DTensorRT_ROOT=<TensorRT dir> && cmake --build plugins/build -j)")
    return plugin_lib


def _cache_key(**parts) -> str:
    """Hash of everything an engine depends on: a manifest entry with the same key is the same engine."""
    return hashlib.sha256(json.dumps({**parts, "settings": BUILD_SETTINGS_VERSION}, sort_keys=True,
                                     default=str).encode()).hexdigest()


def _plugin_provider(trt, config, plugin_lib: Path | None, has_ops: bool) -> dict:
    """Make our plugins visible to the parser (C++ library or Python creators); returns how the engine finds them."""
    if plugin_lib is not None:
        trt_registry.deregister_creators(trt)
        _load_plugin_library(trt, plugin_lib)
        # The plugin library travels inside the engine, so running it needs no separate plugin set-up.
        config.plugins_to_serialize = [str(plugin_lib)]
        return {"provider": "embedded_library", "library": plugin_lib.name, "library_sha256": sha256_file(plugin_lib)}
    if has_ops:
        trt_registry.register_creators(trt)
    return {"provider": "python_creators", "module": "ntc_export.ops.trt_registry",
            "note": "register_creators(trt) in the running process before deserializing"}


def _parse(parser, logger, model, onnx_path: Path, rewritten: bool) -> None:
    """Parse the ONNX into the network; a one-line NtcError naming the parser's (and plugins') complaint."""
    # A rewritten graph is parsed from memory; the path still locates external weights beside the ONNX.
    parsed = (parser.parse(model.SerializeToString(), str(onnx_path)) if rewritten
              else parser.parse_from_file(str(onnx_path)))
    if not parsed:
        errors = [str(parser.get_error(i)).strip() for i in range(parser.num_errors)]
        detail = errors[0].splitlines()[0][:400] if errors else "no detail"
        logged = "; ".join(e.splitlines()[0][:200] for e in logger.errors()[:3])  # plugins explain themselves here
        raise NtcError(f"{onnx_path.name}: the TensorRT ONNX parser failed: {detail}"
                       + (f" ({logged})" if logged else ""))


def _configure(trt, builder, network, config, target, profiles, batch, grid) -> tuple[dict, int]:
    """Optimization profile, the target's compute capability, workspace: returns (profiles chosen, workspace)."""
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
    return chosen, workspace


def engine_cache_key(onnx_path, target, precision: str, plugin_lib=None, profiles: dict | None = None,
                     batch=DEFAULT_BATCH, grid=DEFAULT_GRID) -> str:
    """The key of the engine these inputs build (what the manifest's cache_key records), without building it."""
    target = get_target(target)
    plugin_lib = _check_plugin_lib(plugin_lib)
    return _cache_key(onnx=sha256_file(onnx_path), target=target.name, sm=target.sm, precision=precision,
                      trt=trt_env.version_info(target.backend),
                      plugin_lib=sha256_file(plugin_lib) if plugin_lib else None, profiles=profiles,
                      batch=list(batch), grid=[list(g) for g in grid_triple(grid)])


def cached_build(onnx_path, target, precision: str, out_dir, profiles: dict | None = None, plugin_lib=None,
                 batch=DEFAULT_BATCH, grid=DEFAULT_GRID, name: str | None = None) -> dict | None:
    """build_engine's result on an engine-cache hit in `out_dir`, else None (nothing is built)."""
    target = get_target(target)
    name = name or model_name(Path(onnx_path))
    key = engine_cache_key(onnx_path, target, precision, plugin_lib, profiles, batch, grid)
    hit = cached_entry(out_dir, name, target.name, precision, key)
    if hit is None:
        return None
    return {**hit, "cache": "hit", "engine_path": str(Path(out_dir) / "engines" / hit["engine"])}


def build_engine(onnx_path, target, precision: str, out_dir, profiles: dict | None = None, plugin_lib=None,
                 batch=DEFAULT_BATCH, grid=DEFAULT_GRID, name: str | None = None,
                 provenance: dict | None = None) -> dict:
    """Build `<out>/engines/<target>/<model>.<precision>.engine` for a tensorrt_rtx target; returns its manifest entry
    plus "cache" ("hit" or "miss") and "engine_path". `profiles`: input name -> [min, opt, max] shapes;
    `provenance`: fields the manifest entry records as well (e.g. the calibration data of a Q/DQ graph)."""
    target = check_precision(get_target(target), precision)
    if target.backend != "tensorrt_rtx":
        raise NtcError(f"{target.name} builds with TensorRT on the device ({target.trt_range}): "
                       "write a deploy bundle instead (ntc_export.backend.trt.bundle.write_bundle)")
    onnx_path = Path(onnx_path)
    model = load_onnx_for(onnx_path, precision)
    # a profile the graph cannot take (a static axis asked to vary, another size) is refused before any build
    check_profiles(onnx_path.name, onnx_inputs(model), profiles, batch, grid)
    ops = custom_ops(model)
    # an int8-interface graph's scales: the manifest keeps them for runners that feed floats (backend/onnx/int8_io.py)
    scales = interface_scales({p.key: p.value for p in model.metadata_props})
    rewrites = []
    if n_attention := mark_fp32_attention_decomposable(model):
        rewrites.append(f"TRT_decomposable=1 on {n_attention} fp32 Attention node(s)")
    plugin_lib = _check_plugin_lib(plugin_lib)
    engines_dir = _prepare_out(out_dir, target)
    name = name or model_name(onnx_path)
    version = trt_env.version_info(target.backend)
    onnx_sha = sha256_file(onnx_path)
    cache_key = engine_cache_key(onnx_path, target, precision, plugin_lib, profiles, batch, grid)
    hit = cached_entry(out_dir, name, target.name, precision, cache_key)
    if hit is not None:
        log.info("engine cache hit for %s %s %s: build skipped", name, target.name, precision)
        return {**hit, "cache": "hit", "engine_path": str(Path(out_dir) / "engines" / hit["engine"])}

    trt = trt_env.import_backend(target.backend)
    logger = build_log.make_capture_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    config = builder.create_builder_config()
    how = _plugin_provider(trt, config, plugin_lib, bool(ops))
    _parse(trt.OnnxParser(network, logger), logger, model, onnx_path, bool(rewrites))
    chosen, workspace = _configure(trt, builder, network, config, target, profiles, batch, grid)

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
    context_path(engine_path).unlink(missing_ok=True)  # an EPContext model of the engine this one replaces is stale
    layers, source = _layer_summary(trt, engine_bytes, logger)
    write_bytes(engines_dir / f"{name}.{precision}.build.log", logger.text().encode())

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
        "weight_bytes": constant_bytes(model),  # the ONNX's constants: the engine adds kernels and tactics to them
        "sha256": hashlib.sha256(engine_bytes).hexdigest(),
        "build_seconds": round(seconds, 3),
        "workspace_bytes": workspace,
        "cache_key": cache_key,
        "profiles": chosen,
        "inputs": [_tensor_record(network.get_input(i)) for i in range(network.num_inputs)],
        "outputs": [_tensor_record(network.get_output(i)) for i in range(network.num_outputs)],
        "plugins": [{"op": op, "version": PLUGIN_VERSION, "nodes": n, **how} for op, n in sorted(ops.items())],
        "build_rewrites": rewrites,
        "layer_summary_source": source,
        "layer_summary": build_log.summarize(layers),
        "layers": layers,
        "build_log": f"{target.name}/{name}.{precision}.build.log",
        **({"int8_interface": scales} if scales else {}),
        **(provenance or {}),
    }
    update_manifest(out_dir, entry)
    return {**entry, "cache": "miss", "engine_path": str(engine_path)}
