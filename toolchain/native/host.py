"""Build and load the host (CPU) C++ library from plugins/host with g++, cached by source hash.

The same headers in plugins/include compile with nvcc into the CUDA kernels, so the host library is the
CPU reference the tests and ONNX Runtime paths use.
"""

import ctypes
import hashlib
import shutil
import subprocess
import threading
from pathlib import Path

from ..util.atomic import atomic_path
from ..util.errors import NtcError
from ..util.paths import PLUGINS_DIR, cache_dir

_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL] = {}  # "lib" -> the loaded host library


def _sources() -> list[Path]:
    host = PLUGINS_DIR / "host"
    srcs = sorted(host.glob("*.cpp"))
    if not srcs:
        raise NtcError(f"no host sources under {host}: is the ntc-export source tree complete?")
    return srcs


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths + sorted((PLUGINS_DIR / "include").rglob("*.h")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _library_file(srcs: list[Path]) -> Path:
    return cache_dir("native", _digest(srcs)) / "libntc_host.so"


def built_host_library() -> Path | None:
    """The host library built from the current sources, or None when it is not built yet (never compiles)."""
    path = _library_file(_sources())
    return path if path.exists() else None


def host_library_path() -> Path:
    """Compile plugins/host/*.cpp into libntc_host.so (once per source hash) and return its path."""
    srcs = _sources()
    out = _library_file(srcs)
    if out.exists():
        return out
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        raise NtcError("a C++ compiler (g++) is needed to build the host BC decoder: apt-get install g++")
    with atomic_path(out) as tmp:
        cmd = [cxx, "-O2", "-std=c++17", "-shared", "-fPIC", f"-I{PLUGINS_DIR / 'include'}",
               *map(str, srcs), "-o", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise NtcError(f"building the host library failed:\n{proc.stderr[-4000:]}")
    return out


def host_library() -> ctypes.CDLL:
    """The loaded host library (built on first use; sources are hashed once per process)."""
    with _lock:
        if "lib" not in _loaded:
            _loaded["lib"] = ctypes.CDLL(str(host_library_path()))
        return _loaded["lib"]
