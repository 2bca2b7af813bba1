"""Reading a token store: random access by key or position (one seek and read, checked against the index's
sha256), batched decode grid by grid, and PyTorch datasets (map-style and streaming) that work with DataLoader
workers (each process opens its own files and model)."""

import os
from pathlib import Path

import numpy as np

from ..util.errors import NtcError
from . import index, shards
from .decoders import decoder


class Store:
    """An open token store. `model`: a compressor (default: the checkpoint the store carries); `route`: "host" or
    "ort" (decoders.py); `providers`: ONNX Runtime providers for route "ort"."""

    def __init__(self, root, model=None, route: str = "host", providers=None):
        self.root = Path(root)
        self.manifest = index.read_manifest(self.root)
        self.entries, self.complete = index.read_index(self.root, int(self.manifest["shards"]))
        self._by_key = {e.key: i for i, e in enumerate(self.entries)}
        self._module, self.route, self.providers = model, route, providers
        self._decode = None
        self._files: dict = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.entries)

    def __getstate__(self):  # a DataLoader worker reopens files and reloads the model itself
        state = dict(self.__dict__)
        state.update(_files={}, _decode=None, _module=None if self.manifest["model"]["checkpoint"] else self._module)
        return state

    @property
    def keys(self) -> list[str]:
        return [e.key for e in self.entries]

    @property
    def module(self):
        if self._module is None:
            name = self.manifest["model"]["checkpoint"]
            if not name:
                raise NtcError(f"{self.root} carries no checkpoint: open it with model=<the compressor>")
            from ..models import load

            self._module = load(self.root / name)
        fp = self._module.fingerprint().hex()
        if fp != self.manifest["model"]["fingerprint"]:
            raise NtcError(f"{self.root} was written by model {self.manifest['model']['fingerprint']}, not {fp}")
        return self._module

    def position(self, key_or_position) -> int:
        """The position of an image given its key (str) or position (int); a one-line NtcError when absent."""
        if isinstance(key_or_position, (int, np.integer)):
            i = int(key_or_position)
            if not -len(self) <= i < len(self):
                raise NtcError(f"{self.root}: position {i} is out of range ({len(self)} images)")
            return i % len(self)
        i = self._by_key.get(str(key_or_position))
        if i is None:
            raise NtcError(f"{self.root}: no image with key {key_or_position!r} ({len(self)} images)")
        return i

    def _file(self, shard: str):
        if self._pid != os.getpid():  # a forked worker must not share the parent's file offsets
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(shard)
        if f is None:
            try:
                f = self._files[shard] = open(self.root / shard, "rb")
            except FileNotFoundError:
                raise NtcError(f"{self.root}: shard {shard} is missing") from None
        return f

    def payload(self, key_or_position, check: bool = True) -> bytes:
        """One image's payload bytes; with `check`, a one-line NtcError when they do not hash to the index's sha256."""
        e = self.entries[self.position(key_or_position)]
        data = shards.read_span(self._file(e.shard), e.offset, e.length, f"image {e.key!r}")
        if check and index.payload_sha256(data) != e.sha256:
            raise NtcError(f"image {e.key!r}: payload checksum mismatch in {e.shard} (corrupt store)")
        return data

    def decode(self, keys_or_positions, batch: int = 64) -> list[np.ndarray]:
        """Patch tokens [h*w, D] of each image, in the order asked; decoded grid by grid in batches of `batch`."""
        if self._decode is None:
            self._decode = decoder(self.module, self.route, self.providers)
        pos = [self.position(k) for k in keys_or_positions]
        out: list = [None] * len(pos)
        for grid in dict.fromkeys(self.entries[p].grid for p in pos):
            idx = [i for i, p in enumerate(pos) if self.entries[p].grid == grid]
            for s in range(0, len(idx), batch):
                part = idx[s:s + batch]
                for i, t in zip(part, self._decode([self.payload(pos[i]) for i in part])):
                    out[i] = t
        return out

    def get(self, key_or_position) -> tuple[np.ndarray, tuple[int, int]]:
        """(patch tokens float32 [h*w, D], grid (h, w)) of one image."""
        i = self.position(key_or_position)
        return self.decode([i])[0], self.entries[i].grid

    def dataset(self) -> "TokenDataset":
        return TokenDataset(self)

    def iterable(self, batch: int = 64) -> "TokenStream":
        return TokenStream(self, batch)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}


def open_store(root, model=None, route: str = "host", providers=None) -> Store:
    """Open the token store at `root` (see Store)."""
    return Store(root, model, route, providers)


def _item(store: Store, i: int, tokens: np.ndarray) -> dict:
    import torch

    e = store.entries[i]
    return {"key": e.key, "tokens": torch.from_numpy(np.ascontiguousarray(tokens)),
            "grid": torch.tensor(e.grid, dtype=torch.int64)}


def _torch_data():
    import torch.utils.data as data

    return data


class TokenDataset(_torch_data().Dataset):
    """Map-style: item i -> {"key", "tokens" float32 [h*w, D], "grid" int64 [2]}. Grids may differ between items,
    so batch with `collate_list` (or batch_size=None)."""

    def __init__(self, store: Store):
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> dict:
        return _item(self.store, i, self.store.decode([i])[0])


class TokenStream(_torch_data().IterableDataset):
    """Streaming: each DataLoader worker reads whole shards (shard k goes to worker k mod workers) in order and
    decodes them in batches; yields the items TokenDataset yields."""

    def __init__(self, store: Store, batch: int = 64):
        self.store, self.batch = store, batch

    def __iter__(self):
        info = _torch_data().get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        names = list(dict.fromkeys(e.shard for e in self.store.entries))
        mine = set(names[worker::workers])
        pos = [i for i, e in enumerate(self.store.entries) if e.shard in mine]
        for s in range(0, len(pos), self.batch):
            part = pos[s:s + self.batch]
            for i, t in zip(part, self.store.decode(part, self.batch)):
                yield _item(self.store, i, t)


def collate_list(items: list[dict]) -> list[dict]:
    """A DataLoader collate_fn that keeps a batch's items as a list (their grids may differ)."""
    return list(items)
