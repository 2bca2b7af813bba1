"""Load libntc_kernels.so (the CUDA kernels' C ABI) for ctypes callers: GPU tests, benchmarks, Python plugins."""

import ctypes
import os
from pathlib import Path

from ..util.errors import NtcError
from ..util.paths import PLUGINS_DIR

BUILD_HINT = "cmake -S plugins -B plugins/build && cmake --build plugins/build -j"


def kernels_library_path() -> Path:
    """$NTC_KERNELS_LIB, else plugins/build/libntc_kernels.so; a clear error naming the build command otherwise."""
    env = os.environ.get("NTC_KERNELS_LIB")
    candidates = [Path(env)] if env else []
    candidates.append(PLUGINS_DIR / "build" / "libntc_kernels.so")
    for path in candidates:
        if path.is_file():
            return path
    raise NtcError(f"libntc_kernels.so not found (looked at {', '.join(map(str, candidates))}); build it: {BUILD_HINT}")


_lib: ctypes.CDLL | None = None


def kernels_library() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        _lib = ctypes.CDLL(str(kernels_library_path()))
    return _lib
