"""Where things live: data shipped inside the package (plugin sources, the zoo), located through the import system
so a regular install works as well as a source checkout, and the per-user cache."""

import importlib.util
import os
from pathlib import Path


def package_dir(package: str) -> Path:
    """The folder of an installed package, found without importing it (its own imports may need these paths)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {package} is not installed: reinstall ntc-export")
    return Path(next(iter(spec.submodule_search_locations)))


PLUGINS_DIR = package_dir("ntc_export.plugins")  # C++/CUDA sources and CMake (the plugins/ folder)
ZOO_DIR = package_dir("ntc_export.models") / "zoo"  # zoo checkpoints


def cache_dir(*parts: str) -> Path:
    """Per-user cache (override with NTC_EXPORT_CACHE); created on demand."""
    root = Path(os.environ.get("NTC_EXPORT_CACHE", Path.home() / ".cache" / "ntc-export"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
