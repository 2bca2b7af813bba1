"""Deploy bundles for TensorRT targets (Jetson, datacenter): the engine is built on the device, not here.

`<out>/engines/<target>/<model>.<precision>.bundle/` holds the lowered ONNX, the plugin sources, settings.json, build_engine.py and a
README; `python3 build_engine.py` on the device builds the engine with exactly those settings.
"""

import os
import shutil
import tempfile
from pathlib import Path

from ...ops.domain import STANDARD_DOMAINS
from ...ops.domain import VERSION as PLUGIN_VERSION
from ...util.atomic import write_json, write_text
from ...util.errors import NtcError
from ...util.hashing import sha256_file
from ...util.paths import PLUGINS_DIR
from ..onnx.inspect import constant_bytes, custom_ops, load_onnx_for, model_name, onnx_inputs
from .manifest import update_manifest
from .profiles import DEFAULT_BATCH, DEFAULT_GRID, check_profiles, grid_triple
from .targets import check_precision, get_target

PLUGIN_PARTS = ("CMakeLists.txt", "include", "kernels", "trt", "common")
PLUGIN_LIBRARY = "plugins/build/libntc_trt_plugins.so"
SETTINGS_SCHEMA = 1
JETSON_BUILD_SCRIPT = Path(__file__).with_name("jetson_build_engine.py")  # becomes the bundle's build_engine.py


def plugin_build_command(target) -> str:
    return (f"cmake -S plugins -B plugins/build -DCMAKE_CUDA_ARCHITECTURES={target.sm} -DTensorRT_ROOT=/usr "
            "&& cmake --build plugins/build -j")


def _readme(settings: dict, target) -> str:
    plugin_steps = (f"1. Build the plugin library (CUDA toolkit and TensorRT headers from JetPack):\n\n"
                    f"       {settings['plugin_build']}\n\n" if settings["custom_ops"] else
                    "1. No plugin library is needed: the graph has no ntc:: plugin nodes.\n\n")
    return (
        f"# {settings['model']} for {target.name} ({settings['precision']})\n\n"
        f"{target.description}. Built on the device because {target.name} runs TensorRT "
        f"{target.trt_range} (sm_{target.sm}), which does not install on the export machine.\n\n"
        f"{plugin_steps}"
        "2. Check the settings, then build the engine:\n\n"
        "       python3 build_engine.py --dry-run\n"
        "       python3 build_engine.py\n\n"
        f"The engine is written to `{settings['engine']}`. Attention is lowered as `{settings['attention']}`.\n"
        f"Token grids (h x w): {_grid_text(settings['grid'])}; the input profiles in `settings.json` follow them.\n"
        "Files: the ONNX, `settings.json` (precision, profiles, SM, TensorRT range), `plugins/` (sources).\n"
    )


def _grid_text(grid: dict) -> str:
    return " ".join(f"{k} {h}x{w}" for k, (h, w) in grid.items())


def _external_data_files(model) -> set[str]:
    """Files an ONNX keeps its large weights in (external data), relative to the ONNX."""
    import onnx

    return {entry.value for init in model.graph.initializer
            if init.data_location == onnx.TensorProto.EXTERNAL
            for entry in init.external_data if entry.key == "location"}


def _copy_plugins(dest: Path) -> list[str]:
    copied = []
    dest.mkdir(parents=True, exist_ok=True)
    for part in PLUGIN_PARTS:
        src = PLUGINS_DIR / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("build", "__pycache__", "*.o", "*.so"))
        elif src.is_file():
            shutil.copy2(src, dest / part)
        else:
            continue
        copied.append(part)
    return copied


def write_bundle(onnx_path, target, precision: str, out_dir, profiles: dict | None = None, batch=DEFAULT_BATCH,
                 grid=DEFAULT_GRID, name: str | None = None, provenance: dict | None = None) -> dict:
    """Write the deploy bundle for a tensorrt-backend target; returns its manifest entry (kind "bundle");
    `provenance`: fields the entry records as well."""
    target = check_precision(get_target(target), precision)
    if target.backend != "tensorrt":
        raise NtcError(f"{target.name} builds here with TensorRT-RTX (ntc_export.backend.trt.build.build_engine), not as a bundle")
    onnx_path = Path(onnx_path)
    model = load_onnx_for(onnx_path, precision)
    ops = custom_ops(model)
    if target.attention == "plugin" and any(n.op_type == "Attention" and n.domain in STANDARD_DOMAINS
                                            for n in model.graph.node):
        raise NtcError(f"{onnx_path.name} uses the ONNX Attention op, which TensorRT {target.trt_range} on "
                       f"{target.name} lacks: export it with the 'plugin' attention lowering")
    chosen = check_profiles(onnx_path.name, onnx_inputs(model), profiles, batch, grid)
    grids = {k: list(g) for k, g in zip(("min", "opt", "max"), grid_triple(grid))}  # the token grid (h, w) asked
    name = name or model_name(onnx_path)
    engines_dir = Path(out_dir) / "engines" / target.name
    try:
        engines_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".bundle.", dir=engines_dir))
    except OSError as e:
        raise NtcError(f"cannot write the bundle under {out_dir}: {e.strerror or e}") from None
    bundle = engines_dir / f"{name}.{precision}.bundle"  # one per model and precision, like engines
    try:
        shutil.copy2(onnx_path, staging / onnx_path.name)
        for data_file in _external_data_files(model):
            shutil.copy2(onnx_path.parent / data_file, staging / data_file)
        parts = _copy_plugins(staging / "plugins")
        settings = {
            "schema": SETTINGS_SCHEMA,
            "model": name,
            "target": target.name,
            "sm": target.sm,
            "backend": target.backend,
            "tensorrt_min": target.trt_min,
            "tensorrt_max": target.trt_max,
            "precision": precision,
            "attention": target.attention,
            "onnx": onnx_path.name,
            "onnx_sha256": sha256_file(onnx_path),
            "engine": f"{name}.{precision}.engine",
            "profiles": chosen,
            "grid": grids,
            "workspace_bytes": target.memory_budget_bytes // 4,
            "custom_ops": ops,
            "plugin_library": PLUGIN_LIBRARY,
            "plugin_build": plugin_build_command(target),
            "plugin_sources": parts,
        }
        write_json(staging / "settings.json", settings)
        shutil.copy2(JETSON_BUILD_SCRIPT, staging / "build_engine.py")
        write_text(staging / "README.md", _readme(settings, target))
        # Swap the finished bundle in; the old one (if any) goes only after the new one is complete.
        old = None
        if bundle.exists():
            old = engines_dir / f".bundle.old.{os.getpid()}"
            os.replace(bundle, old)
        os.replace(staging, bundle)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    entry = {
        "kind": "bundle",
        "model": name,
        "target": target.name,
        "sm": target.sm,
        "backend": target.backend,
        "backend_version": target.trt_range,
        "precision": precision,
        "onnx": str(onnx_path.resolve()),
        "onnx_sha256": settings["onnx_sha256"],
        "bundle": str(bundle.relative_to(Path(out_dir) / "engines")),
        "engine": None,
        "weight_bytes": constant_bytes(model),  # no engine here: the ONNX's constants are the size known
        "executed": False,
        "reason": f"TensorRT {target.trt_range} is not installable here: build on the device with "
                  f"{target.name}/{bundle.name}/build_engine.py",
        "profiles": chosen,
        "grid": grids,
        "plugins": [{"op": op, "version": PLUGIN_VERSION, "nodes": n, "provider": "library",
                     "library": PLUGIN_LIBRARY}
                    for op, n in sorted(ops.items())],
        **(provenance or {}),
    }
    update_manifest(out_dir, entry)
    return {**entry, "bundle_path": str(bundle)}
