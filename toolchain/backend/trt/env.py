"""Import TensorRT-RTX (or TensorRT) with the wheel's missing-symlink defect fixed, and report versions."""

import importlib
import importlib.util
import os
from pathlib import Path

from ...util.errors import NtcError

RTX_LIB = "libtensorrt_rtx.so"
_INSTALL_HINT = {
    "tensorrt_rtx": "pip install tensorrt-rtx-cu13 (x86-64 Linux/Windows)",
    "tensorrt": "use the system TensorRT of JetPack on the device (apt-get install python3-libnvinfer)",
}


def rtx_libs_dir() -> Path | None:
    """The folder of the TensorRT-RTX wheel's shared libraries, found without importing them."""
    spec = importlib.util.find_spec("tensorrt_rtx_libs")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def fix_rtx_parser_symlink(libs_dir: Path | None = None) -> Path | None:
    """Create libtensorrt_rtx.so -> libtensorrt_rtx.so.1 (the parser dlopens the unversioned name for plugins).

    Returns the link path (None where the wheel is absent or already complete). NtcError with the one-line fix
    when the folder is read-only.
    """
    libs_dir = libs_dir or rtx_libs_dir()
    if libs_dir is None:
        return None
    link, real = libs_dir / RTX_LIB, libs_dir / f"{RTX_LIB}.1"
    if link.exists() or not real.exists():
        return None
    if not os.access(libs_dir, os.W_OK):
        raise NtcError(f"{link} is missing (TensorRT-RTX wheel defect; ONNX plugin nodes abort without it) and "
                       f"{libs_dir} is read-only: run `ln -s {real.name} {link}`")
    # Link under a temp name then rename, so concurrent processes never see a half-made link.
    tmp = libs_dir / f".{RTX_LIB}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(real.name, tmp)
    os.replace(tmp, link)
    return link


def import_backend(backend: str = "tensorrt_rtx"):
    """The imported `tensorrt_rtx` or `tensorrt` module; NtcError saying how to install it otherwise."""
    if backend not in _INSTALL_HINT:
        raise NtcError(f"unknown TensorRT backend {backend!r}; choose from {', '.join(_INSTALL_HINT)}")
    if backend == "tensorrt_rtx":
        fix_rtx_parser_symlink()
    try:
        return importlib.import_module(backend)
    except ImportError as e:
        raise NtcError(f"{backend} is not importable here ({e}); {_INSTALL_HINT[backend]}") from None


def backend_available(backend: str) -> bool:
    return importlib.util.find_spec(backend) is not None


def version_info(backend: str = "tensorrt_rtx") -> dict:
    """Backend name, version and ONNX parser version (the parts an engine is locked to)."""
    trt = import_backend(backend)
    info = {"backend": backend, "version": trt.__version__}
    parser_version = getattr(trt, "get_nv_onnx_parser_version", None)
    if parser_version is not None:
        info["onnx_parser_version"] = int(parser_version())
    return info
