"""A Hugging Face checkpoint folder: config.json, and tensors read by name from *.safetensors files (one file, or
shards named by model.safetensors.index.json) with safetensors' safe_open — only the tensors asked for, never a
pickle."""

import json
from pathlib import Path

import torch

from ..util.errors import NtcError
from ..util.hashing import sha256_file

CONFIG = "config.json"
INDEX = "model.safetensors.index.json"


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def read_config(folder: Path) -> dict:
    """config.json as a dict; a one-line error when it is missing or not a JSON object."""
    path = folder / CONFIG
    if not path.is_file():
        raise NtcError(f"{folder}: no {CONFIG} (a Hugging Face checkpoint folder has config.json and *.safetensors)")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NtcError(f"{path}: not readable JSON ({_first_line(e)})") from None
    if not isinstance(config, dict):
        raise NtcError(f"{path}: not a JSON object")
    return config


def _header_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except Exception as e:  # safetensors raises its own error types; the message names the problem
        raise NtcError(f"{path}: not a readable safetensors file ({_first_line(e)})") from None


def tensor_files(folder: Path) -> dict[str, str]:
    """Tensor name -> file name: from the shard index when there is one (no shard is opened), else from the
    headers of every *.safetensors file."""
    index = folder / INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise NtcError(f"{index}: not a safetensors shard index ({_first_line(e)})") from None
        if not isinstance(weight_map, dict):
            raise NtcError(f"{index}: weight_map is not a mapping of tensor names to files")
        return {str(k): str(v) for k, v in weight_map.items()}
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise NtcError(f"{folder}: no *.safetensors files (only safetensors are read: .bin/.pt pickles are refused)")
    return {key: f.name for f in files for key in _header_keys(f)}


def read_tensors(folder: Path, where: dict[str, str], names: list[str]) -> dict[str, torch.Tensor]:
    """The named tensors, each from its file in `where` (see `tensor_files`); other tensors are never read."""
    from safetensors import safe_open

    by_file: dict[str, list[str]] = {}
    for name in names:
        by_file.setdefault(where[name], []).append(name)
    out = {}
    for file, keys in by_file.items():
        path = folder / file
        if not path.is_file():
            raise NtcError(f"{path}: shard named by {INDEX} is missing")
        try:
            with safe_open(str(path), framework="pt") as f:
                out.update({k: f.get_tensor(k) for k in keys})
        except Exception as e:  # a truncated shard or a header that lies about a tensor
            raise NtcError(f"{path}: cannot read tensors {keys[:3]} ({_first_line(e)})") from None
    return out


def file_hashes(folder: Path, files) -> dict[str, str]:
    """sha256 of config.json, the shard index (if any) and `files`: the digests the Hub lists for each file."""
    names = [CONFIG, *([INDEX] if (folder / INDEX).is_file() else []), *sorted(set(files))]
    return {name: sha256_file(folder / name) for name in names}
