"""OUT/engines/manifest.json: one entry per built engine or deploy bundle, updated atomically under a lock."""

import fcntl
import json
from contextlib import contextmanager
from pathlib import Path

from ...util.atomic import write_json
from ...util.errors import NtcError
from ...util.hashing import sha256_file

MANIFEST_SCHEMA = 1


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


def cached_entry(out_dir, name, target, precision, cache_key) -> dict | None:
    for entry in read_manifest(out_dir)["engines"]:
        if (entry.get("kind", "engine"), entry["model"], entry["target"], entry["precision"]) != \
                ("engine", name, target, precision) or entry.get("cache_key") != cache_key:
            continue
        engine = Path(out_dir) / "engines" / entry["engine"]
        if engine.is_file() and sha256_file(engine) == entry["sha256"]:
            return entry
    return None


