"""Build a token store: images -> ViT tokens -> the compressor's payloads -> committed shards, resumable.

The driver plans shards of `shard_images` consecutive images and, for each shard not yet committed, gets its
payloads from an executor (local: in this process; ray: Ray Data map stages, build_ray.py), then writes the shard
and its index sidecar (index.py) in input order. A rerun skips committed shards; a kill at any moment loses only the
shard being written, whose temp file the next run deletes.
"""

import shutil
import sys
import time
from pathlib import Path

from ..util.errors import NtcError
from . import index, shards, sources, stages

EXECUTORS = ("local", "ray")
DEFAULT_SHARD_IMAGES = 256
DEFAULT_BATCH = 8


def size_record(size, min_pixels: int, max_pixels: int, factor: int) -> dict:
    """How each image is resized for the ViT (what stages take, what the manifest keeps)."""
    from ..data.tokens import _check_hw, check_pixel_budget, resize_record

    if size != "native":
        size = list(_check_hw(size))
    else:
        check_pixel_budget(min_pixels, max_pixels, factor)
    return {"size": size, "min_pixels": min_pixels, "max_pixels": max_pixels, "factor": factor,
            "rule": resize_record(size if size == "native" else tuple(size), min_pixels, max_pixels, factor)}


def _manifest(module, checkpoint, items, size: dict, shard_images: int, batch: int, source: str) -> dict:
    from ..data import vit
    from ..util.hashing import sha256_file, tool_versions

    model = {"arch": module.arch, "family": module.family, "fingerprint": module.fingerprint().hex(),
             "checkpoint": index.CHECKPOINT if checkpoint else None,
             "checkpoint_sha256": sha256_file(checkpoint) if checkpoint else None}
    return {"format": index.FORMAT, "format_version": index.FORMAT_VERSION,
            "layout": "WebDataset tar shards: member NNNNNNNNN.ntcp = one payload (see ntc_export.store.shards)",
            "model": model, "vit": {"sha256": vit.SOURCE_SHA256, "patch": vit.PATCH, "dim": vit.DIM},
            "resize": size, "inputs": {"source": source, "images": len(items),
                                       "keys_sha256": sources.keys_digest(items)},
            "shard_images": shard_images, "batch": batch, "shards": -(-len(items) // shard_images),
            "versions": {k: v for k, v in tool_versions().items() if v is not None}, "complete": False}


def _check_module(module) -> None:
    if not getattr(module, "is_compressor", False):
        raise NtcError(f"{getattr(module, 'arch', type(module).__name__)} is not a token compressor")


def _executor(name: str, module, units, size: dict, jobs, ray_address, checkpoint):
    """(shard number, payloads in input order) for each planned shard, in shard order."""
    if name == "local":
        return _local(module, units, size, jobs)
    if name == "ray":
        from .build_ray import run as ray_run

        return ray_run(module, checkpoint, units, size, jobs, ray_address)
    raise NtcError(f"unknown executor {name!r} (choose from {', '.join(EXECUTORS)})")


def _local(module, units, size: dict, jobs):
    """Units run in `jobs` threads (ONNX Runtime and PyTorch release the GIL), at most 2 x jobs ahead of the
    writer; payloads come back in input order."""
    import torch
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    threads, window = torch.get_num_threads(), 2 * max(1, jobs or 1)
    current, got, ahead = None, [], deque()
    try:
        with ThreadPoolExecutor(max(1, jobs or 1)) as pool:
            for unit in units:
                ahead.append((unit, pool.submit(stages.run_unit, module, unit, size)))
                if len(ahead) >= window:
                    current, got = yield from _take(ahead, current, got)
            while ahead:
                current, got = yield from _take(ahead, current, got)
    finally:
        torch.set_num_threads(threads)  # the stages pinned this process to one thread
    if current is not None:
        yield current, got


def _take(ahead, current, got):
    """Wait for the oldest unit; yield the shard before it when the unit starts a new one."""
    unit, future = ahead.popleft()
    payloads = future.result()
    if current is not None and unit.shard != current:
        yield current, got
        got = []
    return unit.shard, got + payloads


def build(module, items: list[tuple[str, str]], out, *, checkpoint=None, size=224, min_pixels=None, max_pixels=None,
          factor=None, shard_images: int = DEFAULT_SHARD_IMAGES, batch: int = DEFAULT_BATCH,
          executor: str = "local", jobs: int | None = None, ray_address: str | None = None, source: str = "",
          progress: bool = True) -> dict:
    """Build (or complete) the store at `out` from (key, source) items (sources.py) with a compressor `module`
    (its checkpoint file, when given, is copied into the store so it decodes on its own); the finished manifest."""
    from ..data import tokens as tk

    _check_module(module)
    sources.check_unique(items)
    if shard_images < 1 or batch < 1:
        raise NtcError(f"shard size and batch must be >= 1, got {shard_images} and {batch}")
    if executor not in EXECUTORS:
        raise NtcError(f"unknown executor {executor!r} (choose from {', '.join(EXECUTORS)})")
    size = size_record(size, min_pixels or tk.MIN_PIXELS, max_pixels or tk.MAX_PIXELS, factor or tk.vit.PATCH)
    root = Path(out)
    manifest = _manifest(module, checkpoint, items, size, shard_images, batch, source)
    if (root / index.MANIFEST).exists():
        index.check_same_build(root, manifest)
    elif root.exists() and any(root.iterdir()):
        raise NtcError(f"{root} exists and is not a token store: choose a new --out")
    root.mkdir(parents=True, exist_ok=True)
    shards.sweep_temps(root)
    if checkpoint and not (root / index.CHECKPOINT).is_file():
        tmp = root / f".{index.CHECKPOINT}.part"
        shutil.copyfile(checkpoint, tmp)
        tmp.replace(root / index.CHECKPOINT)
    index.write_manifest(root, manifest)  # written before any shard: a rerun checks it builds the same thing

    total = manifest["shards"]
    done = index.committed(root, total)
    todo = [k for k in range(total) if k not in done]
    pending = sum(min(len(items), (k + 1) * shard_images) - k * shard_images for k in todo)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    if done:
        say(f"store: {len(done)} of {total} shards already committed, {pending} images to go")
    start, written = time.perf_counter(), 0
    units = stages.plan(items, shard_images, batch, todo)
    for k, payloads in _executor(executor, module, units, size, jobs, ray_address, checkpoint):
        lo = k * shard_images
        spans = shards.write_shard(root / shards.shard_name(k), list(enumerate(payloads, lo)))
        entries = [index.Entry(items[lo + i][0], shards.shard_name(k), off, n, _grid(p), index.payload_sha256(p))
                   for i, (p, (off, n)) in enumerate(zip(payloads, spans))]
        index.write_sidecar(root, k, entries)
        done[k] = entries
        written += len(payloads)
        rate = written / max(time.perf_counter() - start, 1e-9)
        say(f"store: shard {len(done)}/{total} committed ({written}/{pending} images, {rate:.1f} images/s)")
    entries = [e for k in range(total) for e in done[k]]
    index.write_index(root, entries)
    manifest.update(complete=True, images=len(entries), payload_bytes=sum(e.length for e in entries),
                    grids={f"{h}x{w}": n for (h, w), n in _grid_counts(entries).items()})
    index.write_manifest(root, manifest)
    return manifest


def _grid(payload: bytes) -> tuple[int, int]:
    from ..codec.payload import unpack

    return unpack(payload).grid


def _grid_counts(entries) -> dict:
    counts: dict = {}
    for e in entries:
        counts[e.grid] = counts.get(e.grid, 0) + 1
    return dict(sorted(counts.items()))
