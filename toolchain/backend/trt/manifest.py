"""OUT/engines/manifest.json: one entry per built engine or deploy bundle, updated atomically under a lock."""

import fcntl
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ...util.atomic import write_json
from ...util.errors import NtcError
from ...util.hashing import sha256_file

MANIFEST_SCHEMA = 1
KINDS = ("engine", "bundle")  # an engine built here, or a deploy bundle built on the device


@dataclass(frozen=True)
class ManifestEntry:
    """One manifest entry, keyed by (model, target, precision, kind); `fields` holds everything the build recorded
    (engine path, sha256, profiles, plugins, ...), as written to manifest.json."""

    kind: str
    model: str
    target: str
    precision: str
    fields: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, entry: dict) -> "ManifestEntry":
        kind = entry.get("kind", "engine")  # manifests written before bundles existed hold engines only
        if kind not in KINDS:
            raise NtcError(f"manifest entry of kind {kind!r}: expected one of {', '.join(KINDS)}")
        return cls(kind, entry["model"], entry["target"], entry["precision"], dict(entry))

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.model, self.target, self.precision, self.kind

    @property
    def is_engine(self) -> bool:
        return self.kind == "engine"

    def to_dict(self) -> dict:
        return {**self.fields, "kind": self.kind, "model": self.model, "target": self.target,
                "precision": self.precision}


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
    manifest["engines"] = [ManifestEntry.parse(e).to_dict() for e in manifest.get("engines", [])]
    return manifest


def update_manifest(out_dir, entry: dict) -> None:
    """Insert or replace the entry with the same (model, target, precision, kind), atomically under a lock."""
    engines_dir = Path(out_dir) / "engines"
    new = ManifestEntry.parse(entry)
    with _manifest_lock(engines_dir):
        manifest = read_manifest(out_dir)
        kept = [e for e in manifest["engines"] if ManifestEntry.parse(e).key != new.key]
        manifest["engines"] = sorted(kept + [new.to_dict()], key=lambda e: (e["model"], e["target"], e["precision"]))
        write_json(engines_dir / "manifest.json", manifest)


def cached_entry(out_dir, name, target, precision, cache_key) -> dict | None:
    """The engine entry built from the same inputs (`cache_key`) whose engine file is intact, else None."""
    for entry in read_manifest(out_dir)["engines"]:
        if ManifestEntry.parse(entry).key != (name, target, precision, "engine") or entry.get("cache_key") != cache_key:
            continue
        engine = Path(out_dir) / "engines" / entry["engine"]
        if engine.is_file() and sha256_file(engine) == entry["sha256"]:
            return entry
    return None


