"""Shard files of a token store: WebDataset-style uncompressed POSIX tar, one member per image.

Why tar: the payloads are already entropy-coded, so a container needs no compression of its own; an uncompressed tar
is read as it is by `webdataset`, Ray Data's `read_webdataset`, `tar` itself and every language's tar library, and
each member's bytes sit contiguously at an offset the index records, so one image is one seek and one read. Parquet
or MDS would add a columnar or framing layer for no gain on opaque blobs, and need a library to read one record.

Member `NNNNNNNNN.ntcp` (the image's position in the build's input, so WebDataset's `__key__` is unique and ordered)
holds the image's payload (codec/payload.py). Headers carry no timestamps, owners or modes of the machine (mtime 0,
uid/gid 0, mode 0644, USTAR), so the same payloads give the same shard bytes on any machine and executor. A shard is
written to a temp name beside its final one and renamed when complete: a killed build leaves no half shard.
"""

import io
import os
import tarfile
from pathlib import Path

from ..util.atomic import atomic_path
from ..util.errors import NtcError

MEMBER_EXT = "ntcp"
MEMBER_MODE = 0o644


def shard_name(number: int) -> str:
    return f"shard-{number:05d}.tar"


def member_name(position: int) -> str:
    return f"{position:09d}.{MEMBER_EXT}"


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, MEMBER_MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def shard_bytes(members: list[tuple[int, bytes]]) -> tuple[bytes, list[tuple[int, int]]]:
    """The tar bytes of (position, payload) members in order, and each payload's (offset, length) in them."""
    buf = io.BytesIO()
    spans = []
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for position, payload in members:
            info = _info(member_name(position), len(payload))
            header = len(info.tobuf(tarfile.USTAR_FORMAT, tar.encoding, tar.errors))
            spans.append((tar.offset + header, len(payload)))
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue(), spans


def write_shard(path: Path, members: list[tuple[int, bytes]]) -> list[tuple[int, int]]:
    """Write a shard atomically (temp name, fsync, rename); each payload's (offset, length) in it."""
    data, spans = shard_bytes(members)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name says the shard is complete
    return spans


def sweep_temps(root: Path) -> list[Path]:
    """Delete temp files a killed build left (atomic writes name them `.<final name>.<random>`); the paths removed."""
    gone = []
    for p in root.glob(".*"):
        if p.is_file() and (p.name.startswith(".shard-") or p.name.startswith(".index") or
                            p.name.startswith(".manifest")):
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def read_span(f, offset: int, length: int, what: str) -> bytes:
    """`length` bytes at `offset` of an open shard; a one-line NtcError when the shard is shorter."""
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise NtcError(f"{what}: shard ends after {len(data)} of {length} bytes (truncated store)")
    return data
