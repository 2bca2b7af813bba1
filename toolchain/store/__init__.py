"""Compressed visual-token stores: images -> ViT tokens -> a compressor's payloads in WebDataset tar shards with an
index and a manifest; built locally or on Ray (build.py), read with random access and PyTorch datasets (reader.py),
verified and summarised (check.py). `ntc_export.store.open(STORE)` opens one."""

from .reader import Store, collate_list, open_store

open = open_store  # noqa: A001 - `ntc_export.store.open(STORE)`, the package's entry point

__all__ = ["Store", "collate_list", "open"]
