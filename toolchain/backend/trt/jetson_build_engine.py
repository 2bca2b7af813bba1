#!/usr/bin/env python3
"""Build the bundle's TensorRT engine on the device (Jetson / TensorRT host) with the settings in settings.json.

    python3 build_engine.py --dry-run      print the exact build settings and exit (no TensorRT needed)
    python3 build_engine.py                build <engine> beside this file (needs `import tensorrt`)

The network is strongly typed: precision comes from the ONNX (Cast and Q/DQ nodes), never from builder flags.
Plugin nodes (domain ntc) need libntc_trt_plugins.so, built from plugins/ here (see README.md).
"""

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load_settings(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"error: cannot read settings {path}: {e}")


def version_in_range(version: str, lo: str, hi: str | None) -> bool:
    v = tuple(int(p) for p in version.split(".")[:3] if p.isdigit())
    lo_t = tuple(int(p) for p in lo.split("."))
    if v[: len(lo_t)] < lo_t:
        return False
    if hi:
        hi_t = tuple(int(p) for p in hi.split("."))
        return v[: len(hi_t)] <= hi_t
    return True


def shape_text(shape) -> str:
    return "x".join(str(d) for d in shape)


def trtexec_line(s: dict, plugin_lib: Path | None) -> str:
    """The equivalent trtexec command, for users who prefer it."""
    parts = ["trtexec", f"--onnx={s['onnx']}", "--stronglyTyped", f"--saveEngine={s['engine']}",
             f"--memPoolSize=workspace:{s['workspace_bytes'] // (1 << 20)}M", "--profilingVerbosity=detailed"]
    for flag, i in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
        if s["profiles"]:
            parts.append(f"{flag}=" + ",".join(f"{n}:{shape_text(p[i])}" for n, p in s["profiles"].items()))
    if plugin_lib is not None:
        parts.append(f"--staticPlugins={plugin_lib}")
    return " ".join(parts)


def describe(s: dict, plugin_lib: Path | None, engine: Path) -> str:
    hi = s["tensorrt_max"] or "any"
    lines = [
        f"target: {s['target']} (sm_{s['sm']}), TensorRT {s['tensorrt_min']} .. {hi}",
        f"onnx: {s['onnx']} (sha256 {s['onnx_sha256']})",
        f"precision: {s['precision']} (strongly typed network)",
        f"attention lowering: {s['attention']}",
        f"workspace: {s['workspace_bytes']} bytes",
        "profiling verbosity: detailed",
    ]
    if s.get("grid"):  # the token grid (h x w) the profiles were read off
        lines.append("token grid: " + " ".join(f"{k} {h}x{w}" for k, (h, w) in s["grid"].items()))
    for name, (lo, opt, hi_shape) in s["profiles"].items():
        lines.append(f"profile {name}: min {shape_text(lo)} opt {shape_text(opt)} max {shape_text(hi_shape)}")
    if s["custom_ops"]:
        ops = ", ".join(f"{op} x{n}" for op, n in s["custom_ops"].items())
        lines.append(f"plugins: {ops} from {plugin_lib}")
    else:
        lines.append("plugins: none")
    lines += [f"engine: {engine}", f"equivalent: {trtexec_line(s, plugin_lib)}"]
    return "\n".join(lines)


def sha256_file(path: Path) -> str:
    # This script runs on the device without ntc-export installed, so it carries its own copy.
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build(s: dict, onnx_path: Path, plugin_lib: Path | None, engine: Path, verbose: bool) -> None:
    try:
        import tensorrt as trt
    except ImportError:
        sys.exit("error: `import tensorrt` failed: use the JetPack TensorRT (apt-get install python3-libnvinfer)")
    if not version_in_range(trt.__version__, s["tensorrt_min"], s["tensorrt_max"]):
        sys.exit(f"error: TensorRT {trt.__version__} is outside {s['tensorrt_min']} .. {s['tensorrt_max']} "
                 f"that {s['target']} was lowered for")
    if sha256_file(onnx_path) != s["onnx_sha256"]:
        sys.exit(f"error: {onnx_path} does not match the sha256 in settings.json")
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    if s["custom_ops"]:
        if plugin_lib is None or not plugin_lib.is_file():
            sys.exit(f"error: plugin library {plugin_lib} not found; build it: {s['plugin_build']}")
        if trt.get_plugin_registry().load_library(str(plugin_lib)) is None:
            sys.exit(f"error: TensorRT could not load {plugin_lib} as a plugin library")
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        sys.exit(f"error: ONNX parse failed: {errors}")
    config = builder.create_builder_config()
    if s["profiles"]:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in s["profiles"].items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, s["workspace_bytes"])
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        sys.exit("error: engine build failed (rerun with --verbose for the builder log)")
    tmp = engine.with_name(f".{engine.name}.{os.getpid()}")
    tmp.write_bytes(bytes(serialized))
    os.replace(tmp, engine)
    print(json.dumps({"engine": str(engine), "bytes": engine.stat().st_size, "sha256": sha256_file(engine),
                      "build_seconds": round(seconds, 3), "tensorrt": trt.__version__}, indent=2))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", type=Path, default=HERE / "settings.json")
    ap.add_argument("--plugin-lib", type=Path, help="libntc_trt_plugins.so (default: from settings.json)")
    ap.add_argument("--engine", type=Path, help="output engine path (default: from settings.json)")
    ap.add_argument("--dry-run", action="store_true", help="print the build settings and exit")
    ap.add_argument("--verbose", action="store_true", help="show the TensorRT builder log")
    args = ap.parse_args(argv)
    s = load_settings(args.settings)
    root = args.settings.resolve().parent
    plugin_lib = args.plugin_lib or (root / s["plugin_library"] if s["custom_ops"] else None)
    engine = args.engine or root / s["engine"]
    print(describe(s, plugin_lib, engine))
    if args.dry_run:
        return 0
    build(s, root / s["onnx"], plugin_lib, engine, args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
