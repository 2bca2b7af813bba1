"""Calibration cache `<out>/calibration/<precision>.json`: scales keyed by everything they depend on.

Same key -> the scales are reused; any difference -> recomputed, with a message naming each changed item.
"""

import json
from pathlib import Path

from ..util.atomic import write_json

FORMAT = "ntc-export-calibration/1"
_LABELS = {"model_sha256": "model", "data_sha256": "calibration data", "holdout_sha256": "held-out data",
           "precision": "precision", "method": "method", "target_cosine": "target cosine", "settings": "settings",
           "versions": "tool versions"}


def tool_versions() -> dict[str, str | None]:
    from importlib import metadata

    out = {}
    for dist in ("ntc-export", "onnx", "onnxruntime", "numpy", "ml_dtypes"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def cache_path(out_dir, precision: str) -> Path:
    return Path(out_dir) / "calibration" / f"{precision}.json"


def read(path: Path) -> dict | None:
    """The cached record, or None when absent or unreadable (an unreadable cache is simply recomputed)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)
    return text[:12] if isinstance(value, str) and len(value) == 64 else text


def changes(old_key: dict, new_key: dict) -> list[str]:
    """One phrase per key item that differs, e.g. "method changed (minmax -> mse)"."""
    out = []
    for item in _LABELS:
        a, b = old_key.get(item), new_key.get(item)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            diffs = [f"{k} {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            out.append(f"{_LABELS[item]} changed ({', '.join(diffs)})")
        else:
            out.append(f"{_LABELS[item]} changed ({_short(a)} -> {_short(b)})")
    return out


def write(path: Path, key: dict, body: dict) -> None:
    write_json(path, {"format": FORMAT, "key": key, **body})
