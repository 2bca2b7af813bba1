"""Shared helpers of the token-store tests: the reference build and independent readers of its files."""

import numpy as np
from ntc_export.util.paths import ZOO_DIR

MODEL = ZOO_DIR / "vq_x16.pt"
SIZE = (112, 168)  # (H, W): an even-sided, non-square 8x12 token grid
SHARD_IMAGES = 4
CLI_BUILD = [str(MODEL), "--builtin", "skimage", "--size", "168x112", "--shard-images", str(SHARD_IMAGES)]


def build_reference(out, items=None, executor="local"):
    """The skimage store the CLI line CLI_BUILD writes, built through the Python API."""
    from ntc_export.models import load
    from ntc_export.store import build, sources

    return build.build(load(MODEL), items or sources.from_builtin("skimage"), out, checkpoint=MODEL, size=SIZE,
                       shard_images=SHARD_IMAGES, executor=executor, source="builtin:skimage", progress=False)


def store_files(root) -> dict:
    """Every file of a store, by name: its bytes (temp files included, so a leftover shows)."""
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def tar_payloads(root) -> dict:
    """(shard, member name) -> payload bytes, read with the standard library's tar reader (what WebDataset reads)."""
    import tarfile

    out = {}
    for shard in sorted(root.glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                out[shard.name, m.name] = tar.extractfile(m).read()
    return out


def decoded(module, payload: bytes) -> np.ndarray:
    return module.decode([payload])[0]
