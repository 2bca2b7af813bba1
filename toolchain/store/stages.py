"""The three stages every executor runs on a work unit (a run of consecutive images of one shard): pixels (load,
resize, normalise), ViT tokens, payloads. Units are planned by the driver alone, and each stage's arithmetic depends
only on its unit, so the local and the Ray executor compute the same bytes. PyTorch runs the resize and the encoder
on one thread: its kernels' results change with the thread count (the antialiased resize by up to 1e-6, enough to
move a quantizer's choice), and a Ray worker's count is not the driver's."""

from dataclasses import dataclass

import numpy as np

from . import sources


@dataclass(frozen=True)
class Unit:
    """Images `positions` (with their sources) of shard `shard`."""

    shard: int
    positions: tuple[int, ...]
    sources: tuple[str, ...]


def plan(items: list[tuple[str, str]], shard_images: int, batch: int, shards=None) -> list[Unit]:
    """The units of the given shards (default: all), in input order: each shard's images in runs of `batch`."""
    total = -(-len(items) // shard_images)
    out = []
    for k in (range(total) if shards is None else shards):
        lo, hi = k * shard_images, min(len(items), (k + 1) * shard_images)
        for start in range(lo, hi, batch):
            pos = tuple(range(start, min(hi, start + batch)))
            out.append(Unit(k, pos, tuple(items[i][1] for i in pos)))
    return out


def single_thread() -> None:
    """Pin PyTorch to one thread in this process (see the module docstring)."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def target_size(image: np.ndarray, size) -> tuple[int, int]:
    from ..data.tokens import target_sizes

    return target_sizes([image], size["size"], size["min_pixels"], size["max_pixels"], size["factor"])[0]


def pixels(unit: Unit, size: dict) -> list[np.ndarray]:
    """Each image of the unit loaded and preprocessed at its target size: float32 [3, H, W]."""
    from ..data.tokens import preprocess

    single_thread()
    out = []
    for src in unit.sources:
        image = sources.load(src)
        out.append(preprocess([image], target_size(image, size))[0])
    return out


def tokens(images: list[np.ndarray]) -> list[np.ndarray]:
    """Preprocessed images -> patch tokens on their grid [h, w, D]: one ViT run per distinct size, in order."""
    from ..data import vit

    out = [None] * len(images)
    for hw in dict.fromkeys(im.shape[1:] for im in images):
        idx = [i for i, im in enumerate(images) if im.shape[1:] == hw]
        t = vit.run_tokens(np.stack([images[i] for i in idx]))[:, 1:]  # the CLS row stays out of payloads
        for i, row in zip(idx, t):
            out[i] = row.reshape(hw[0] // vit.PATCH, hw[1] // vit.PATCH, -1)
    return out


def payloads(module, grid_tokens: list[np.ndarray]) -> list[bytes]:
    """Patch tokens [h, w, D] per image -> one payload each, encoded grid by grid (a family codes a grid at once)."""
    single_thread()
    out = [None] * len(grid_tokens)
    for hw in dict.fromkeys(t.shape for t in grid_tokens):
        idx = [i for i, t in enumerate(grid_tokens) if t.shape == hw]
        for i, p in zip(idx, module.encode(np.stack([grid_tokens[i] for i in idx]))):
            out[i] = bytes(p)
    return out


def run_unit(module, unit: Unit, size: dict) -> list[bytes]:
    """All three stages on one unit, in one process (the local executor)."""
    return payloads(module, tokens(pixels(unit, size)))
