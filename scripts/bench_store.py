"""Benchmark a compressed visual-token store against the alternatives, in one run; prints JSON.

Builds a store of the photo corpus's crops (a split, optionally the first --photos photographs) with a zoo
compressor (images/s; with --ray also on a local Ray instance, and whether the bytes are identical), then reads one
epoch with a DataLoader over the streaming dataset at 1 and 2 workers (tokens/s) for:
- the compressor's payloads (decoded on the host),
- raw fp16 tokens in the same shard format (the ViT run once at build, no codec),
- AVIF pictures at the ViT's input size in the same format (decoded by Pillow, then the ViT on every read);
and the bytes on disk of each (shards and index; the checkpoint apart).

    .venv/bin/python scripts/bench_store.py --split train --photos 32 --out /tmp/bench-store
"""

import argparse
import io
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from ntc_export.codec.payload import Payload, expect_all
from ntc_export.store import build, index, shards, sources
from ntc_export.util.paths import ZOO_DIR


class Fp16Tokens:
    """The compressor contract with no codec: a payload's body is the patch tokens in fp16."""

    is_compressor, family, arch = True, "fp16", "fp16"

    def fingerprint(self) -> bytes:
        return b"fp16\0\0\0\0"

    def encode(self, patch_tokens) -> list[bytes]:
        t = np.asarray(patch_tokens, np.float32)
        return [Payload(self.family, self.fingerprint(), t.shape[1:3], x.astype(np.float16).tobytes()).pack()
                for x in t]

    def decode(self, payloads) -> np.ndarray:
        parsed = expect_all(payloads, self.family, self.fingerprint())
        h, w = parsed[0].grid
        return np.stack([np.frombuffer(p.body, np.float16).reshape(h * w, -1) for p in parsed]).astype(np.float32)


class AvifPictures:
    """Reads AVIF payloads (pictures at the ViT's input size): Pillow decode, then the ViT, to patch tokens."""

    is_compressor, family, arch = True, "avif", "avif"

    def fingerprint(self) -> bytes:
        return b"avif\0\0\0\0"

    def decode(self, payloads) -> np.ndarray:
        from PIL import Image

        from ntc_export.data import vit
        from ntc_export.data.tokens import preprocess

        parsed = expect_all(payloads, self.family, self.fingerprint())
        pictures = []
        for p in parsed:
            with Image.open(io.BytesIO(p.body)) as im:
                pictures.append(np.asarray(im.convert("RGB")))
        h, w = parsed[0].grid
        return vit.run_tokens(preprocess(pictures, (h * vit.PATCH, w * vit.PATCH)))[:, 1:]


def avif_store(items, out: Path, side: int, quality: int, shard_images: int) -> float:
    """Pictures resized as the ViT sees them, coded as AVIF, written in the store's shard format; seconds taken."""
    from PIL import Image

    from ntc_export.data import vit
    from ntc_export.data.tokens import resized_pictures

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    codec, grid = AvifPictures(), (side // vit.PATCH, side // vit.PATCH)
    for k in range(-(-len(items) // shard_images)):
        lo = k * shard_images
        chunk = items[lo:lo + shard_images]
        payloads = []
        for pic in resized_pictures([sources.load(src) for _, src in chunk], side):
            buf = io.BytesIO()
            Image.fromarray(pic).save(buf, format="AVIF", quality=quality)
            payloads.append(Payload(codec.family, codec.fingerprint(), grid, buf.getvalue()).pack())
        spans = shards.write_shard(out / shards.shard_name(k), list(enumerate(payloads, lo)))
        index.write_sidecar(out, k, [index.Entry(key, shards.shard_name(k), o, n, grid, index.payload_sha256(p))
                                     for (key, _), p, (o, n) in zip(chunk, payloads, spans)])
    entries, _ = index.read_index(out, -(-len(items) // shard_images))
    index.write_index(out, entries)
    index.write_manifest(out, {"format": index.FORMAT, "format_version": index.FORMAT_VERSION,
                               "model": {"arch": "avif", "family": "avif", "fingerprint": codec.fingerprint().hex(),
                                         "checkpoint": None},
                               "vit": {"dim": vit.DIM}, "shards": -(-len(items) // shard_images), "complete": True})
    return time.perf_counter() - start


def read_epoch(root: Path, model, workers: int, batch: int) -> dict:
    """One epoch over the streaming dataset with a DataLoader: tokens/s and images/s."""
    import torch.utils.data as data

    from ntc_export import store

    s = store.open(root, model=model)
    loader = data.DataLoader(s.iterable(batch=batch), batch_size=batch, num_workers=workers,
                             collate_fn=store.collate_list, persistent_workers=False)
    start, images, tokens = time.perf_counter(), 0, 0
    for items in loader:
        images += len(items)
        tokens += sum(int(it["tokens"].shape[0]) for it in items)
    seconds = time.perf_counter() - start
    return {"workers": workers, "images": images, "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 1), "images_per_s": round(images / seconds, 2)}


def disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.iterdir() if p.is_file() and p.name != index.CHECKPOINT)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ZOO_DIR / "vq_x16.pt"))
    ap.add_argument("--split", default="train")
    ap.add_argument("--photos", type=int, default=0, help="The first N photographs of the split (0: all).")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--shard-images", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--avif-quality", type=int, default=50)
    ap.add_argument("--ray", action="store_true", help="Also build on a local Ray instance and compare bytes.")
    ap.add_argument("--out", type=Path, required=True, help="A scratch folder (emptied first).")
    args = ap.parse_args(argv)

    from ntc_export.data.tokens import PHOTO_CROPS
    from ntc_export.models import load

    shutil.rmtree(args.out, ignore_errors=True)
    items = sources.from_builtin(f"photos:{args.split}")
    if args.photos:
        items = items[:args.photos * PHOTO_CROPS]
    module = load(args.model)
    common = dict(size=args.size, shard_images=args.shard_images, batch=args.batch, progress=False,
                  source=f"builtin:photos:{args.split}")
    result = {"scale": {"split": args.split, "images": len(items), "size": args.size, "model": Path(args.model).name,
                        "shard_images": args.shard_images}, "build": {}, "read": {}, "bytes_on_disk": {}}
    for name, executor in (("local", "local"), *((("ray", "ray"),) if args.ray else ())):
        start = time.perf_counter()
        build.build(module, items, args.out / f"payloads-{name}", checkpoint=args.model, executor=executor, **common)
        result["build"][f"payloads_{name}_images_per_s"] = round(len(items) / (time.perf_counter() - start), 2)
    if args.ray:
        a, b = args.out / "payloads-local", args.out / "payloads-ray"
        result["build"]["ray_identical_bytes"] = all(
            (a / n).read_bytes() == (b / n).read_bytes() for n in sorted(p.name for p in a.iterdir()))
    start = time.perf_counter()
    build.build(Fp16Tokens(), items, args.out / "fp16", **common)
    result["build"]["fp16_images_per_s"] = round(len(items) / (time.perf_counter() - start), 2)
    seconds = avif_store(items, args.out / "avif", args.size, args.avif_quality, args.shard_images)
    result["build"]["avif_images_per_s"] = round(len(items) / seconds, 2)
    routes = {"payloads": (args.out / "payloads-local", None), "fp16": (args.out / "fp16", Fp16Tokens()),
              f"avif_q{args.avif_quality}": (args.out / "avif", AvifPictures())}
    for name, (root, model) in routes.items():
        result["read"][name] = [read_epoch(root, model, w, args.batch) for w in (1, 2)]
        result["bytes_on_disk"][name] = disk_bytes(root)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
