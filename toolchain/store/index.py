"""Index and manifest of a token store.

Index: one entry per image, in input order: key, shard file, offset and length of its payload in the shard, token
grid (h, w) and the payload's sha256. Each committed shard gets a sidecar `shard-NNNNN.json` holding its entries,
written atomically after the shard itself: a shard counts as committed only once its sidecar exists, so a rerun
rebuilds exactly the shards without one. A finished build joins the sidecars into `index.json`.
Manifest (`manifest.json`): what the store was built from (model, ViT, resize rule, inputs), the library versions,
and, once finished, the totals. Both hold no timestamps or machine paths, so equal inputs give equal files.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..util.atomic import write_json
from ..util.errors import NtcError
from .shards import shard_name

FORMAT = "ntc-export token store"
FORMAT_VERSION = 1
INDEX = "index.json"
MANIFEST = "manifest.json"
CHECKPOINT = "model.pt"
FIELDS = ["key", "shard", "offset", "length", "h", "w", "sha256"]


@dataclass(frozen=True)
class Entry:
    """Where one image's payload lives and what it must hash to."""

    key: str
    shard: str
    offset: int
    length: int
    grid: tuple[int, int]
    sha256: str

    def row(self) -> list:
        return [self.key, self.shard, self.offset, self.length, self.grid[0], self.grid[1], self.sha256]

    @classmethod
    def of_row(cls, row) -> "Entry":
        key, shard, offset, length, h, w, sha = row
        return cls(str(key), str(shard), int(offset), int(length), (int(h), int(w)), str(sha))


def payload_sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def sidecar_name(number: int) -> str:
    return shard_name(number).replace(".tar", ".json")


def _table(entries: list[Entry]) -> dict:
    return {"fields": FIELDS, "entries": [e.row() for e in entries]}


def _entries(path: Path) -> list[Entry]:
    try:
        table = json.loads(path.read_text())
        if table.get("fields") != FIELDS:
            raise ValueError(f"fields {table.get('fields')}")
        return [Entry.of_row(r) for r in table["entries"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise NtcError(f"{path}: not a token-store index ({str(e).splitlines()[0][:200]})") from None


def write_sidecar(root: Path, number: int, entries: list[Entry]) -> None:
    write_json(root / sidecar_name(number), _table(entries))


def committed(root: Path, shards: int) -> dict[int, list[Entry]]:
    """The entries of every committed shard (its sidecar present and its shard file in place), by shard number."""
    out = {}
    for k in range(shards):
        side = root / sidecar_name(k)
        if side.is_file() and (root / shard_name(k)).is_file():
            out[k] = _entries(side)
    return out


def write_index(root: Path, entries: list[Entry]) -> None:
    write_json(root / INDEX, _table(entries))


def read_index(root: Path, shards: int) -> tuple[list[Entry], bool]:
    """(every committed entry in input order, whether the store is complete): `index.json` when the build finished,
    else the sidecars of the shards committed so far."""
    if (root / INDEX).is_file():
        return _entries(root / INDEX), True
    parts = committed(root, shards)
    return [e for k in sorted(parts) for e in parts[k]], False


def read_manifest(root: Path) -> dict:
    path = Path(root) / MANIFEST
    if not Path(root).is_dir():
        raise NtcError(f"{root}: no such token store")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise NtcError(f"{root}: not a token store (no {MANIFEST})") from None
    except (OSError, ValueError) as e:
        raise NtcError(f"{path}: unreadable manifest ({str(e).splitlines()[0][:200]})") from None
    if manifest.get("format") != FORMAT:
        raise NtcError(f"{path}: not a token-store manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise NtcError(f"{path}: token-store format version {manifest.get('format_version')} is not supported (this "
                       f"is version {FORMAT_VERSION})")
    return manifest


def write_manifest(root: Path, manifest: dict) -> None:
    write_json(root / MANIFEST, manifest)


BUILD_FIELDS = ("format", "format_version", "model", "vit", "resize", "inputs", "shard_images", "batch")


def check_same_build(root: Path, manifest: dict) -> None:
    """A rerun into an existing store must build the same thing; a one-line NtcError naming what differs."""
    old = read_manifest(root)
    for name in BUILD_FIELDS:
        if old.get(name) != manifest.get(name):
            raise NtcError(f"{root} was built with another {name} ({json.dumps(old.get(name))[:120]}): build into a "
                           "new --out, or delete it")
