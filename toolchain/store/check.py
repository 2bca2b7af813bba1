"""`verify` (every payload against its checksum and header, a sample decoded; every bad image named, the rest read
on) and `stat` (bytes on disk, rate, images, grids) of a token store."""

from pathlib import Path

import numpy as np

from ..util.errors import NtcError
from . import index
from .reader import Store


def verify(store: Store, sample: int = 16) -> dict:
    """{"images", "checked", "decoded", "bad": [{"key", "shard", "problem"}], "complete"}: each image's bytes are
    read and hashed and its payload header checked against the index; `sample` good images spread over the store
    are decoded (all of them when sample < 0). Never stops at a bad image."""
    from ..codec.payload import unpack

    bad, good = [], []
    for i, e in enumerate(store.entries):
        try:
            p = unpack(store.payload(i), f"image {e.key!r}")
            if p.grid != e.grid:
                raise NtcError(f"payload grid {p.grid} differs from the index's {e.grid}")
            good.append(i)
        except NtcError as err:
            bad.append({"key": e.key, "shard": e.shard, "problem": str(err)})
    chosen = good if sample < 0 or sample >= len(good) else \
        [good[int(j)] for j in np.linspace(0, len(good) - 1, sample).round().astype(int)]
    decoded = 0
    for i in chosen:
        e = store.entries[i]
        try:
            tokens = store.decode([i])[0]
            if tokens.shape[0] != e.grid[0] * e.grid[1] or not np.isfinite(tokens).all():
                raise NtcError(f"decoded to {list(tokens.shape)} (finite: {bool(np.isfinite(tokens).all())})")
            decoded += 1
        except NtcError as err:
            bad.append({"key": e.key, "shard": e.shard, "problem": f"decode: {err}"})
    return {"images": len(store), "checked": len(store.entries), "decoded": decoded, "bad": bad,
            "complete": store.complete}


def stat(store: Store) -> dict:
    """Bytes on disk (every file of the store; of which the compressor's checkpoint, and the shards: payloads plus
    tar headers and padding to 512-byte blocks), payload bytes, images, grids, bytes per image and bits per token,
    and the ratio to the same tokens in fp16."""
    files = [p for p in Path(store.root).iterdir() if p.is_file() and not p.name.startswith(".")]
    on_disk = sum(p.stat().st_size for p in files)
    shard_bytes = sum(p.stat().st_size for p in files if p.suffix == ".tar")
    checkpoint = sum(p.stat().st_size for p in files if p.name == index.CHECKPOINT)
    payload = sum(e.length for e in store.entries)
    tokens = sum(e.grid[0] * e.grid[1] for e in store.entries)
    grids: dict = {}
    for e in store.entries:
        grids[f"{e.grid[0]}x{e.grid[1]}"] = grids.get(f"{e.grid[0]}x{e.grid[1]}", 0) + 1
    n = max(len(store), 1)
    dim = int(store.manifest["vit"]["dim"])
    return {"images": len(store), "complete": store.complete, "shards": len({e.shard for e in store.entries}),
            "model": store.manifest["model"]["arch"], "family": store.manifest["model"]["family"],
            "bytes_on_disk": on_disk, "checkpoint_bytes": checkpoint, "shard_bytes": shard_bytes, "payload_bytes": payload,
            "bytes_per_image": payload / n, "bits_per_token": 8 * payload / max(tokens, 1),
            "fp16_ratio": 2 * dim * tokens / max(payload, 1), "grids": dict(sorted(grids.items()))}
