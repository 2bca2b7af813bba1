"""Checkpoint format "ntc-export/1": {format, arch, config, state_dict}, read with weights_only=True (never unpickled)."""

import os
import pickle
import zipfile
from pathlib import Path

import torch
import torch.nn as nn

from ..util.atomic import atomic_path
from ..util.errors import NtcError
from .registry import build

FORMAT = "ntc-export/1"


def save(module: nn.Module, path: str | os.PathLike, half: bool = False, meta: dict | None = None) -> None:
    """Write `module` (a registered architecture) atomically; `half` stores float weights as float16 (half the bytes;
    `load` casts them back to the module's float32). `meta` (JSON-able) says where the weights came from; `load`
    ignores it and `read_meta` returns it."""
    if not hasattr(module, "arch") or not hasattr(module, "config"):
        raise NtcError(f"{type(module).__name__} is not a registered ntc-export architecture")
    payload = {
        "format": FORMAT,
        "arch": module.arch,
        "config": dict(module.config),
        "state_dict": {k: _stored(v.detach().cpu().contiguous(), half) for k, v in module.state_dict().items()},
    }
    if meta:
        payload["meta"] = meta
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)  # a file object, not the random temp name, roots the zip: same model, same bytes


def _stored(tensor: torch.Tensor, half: bool) -> torch.Tensor:
    return tensor.half() if half and tensor.dtype == torch.float32 else tensor


def _read(path: Path) -> dict:
    if not path.exists():
        raise NtcError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        if "Unsupported global" in str(e) or "GLOBAL" in str(e):
            raise NtcError(f"{path}: refuses to unpickle arbitrary Python objects (a pickled module? save with "
                           f"ntc_export.models.save): {first[:200]}") from None
        raise NtcError(f"{path}: corrupt checkpoint ({first[:200]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NtcError(f"{path}: truncated or corrupt checkpoint ({msg[:200]})") from None


def load(path: str | os.PathLike) -> nn.Module:
    """Load a checkpoint into its architecture (or a torch.export program, `.pt2`, or an ONNX file), in eval mode.
    Every problem is a one-line NtcError."""
    path = Path(path)
    if path.suffix == ".pt2":
        from .program import load_program

        return load_program(path)
    if path.suffix == ".onnx":
        from .onnx_file import load_onnx_file

        return load_onnx_file(path)
    ckpt = _read(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise NtcError(f"{path}: not an ntc-export checkpoint (format {got!r}, expected {FORMAT!r})")
    for key in ("arch", "config", "state_dict"):
        if key not in ckpt:
            raise NtcError(f"{path}: checkpoint lacks {key!r}")
    module = build(ckpt["arch"], ckpt["config"])
    if not isinstance(ckpt["state_dict"], dict):
        raise NtcError(f"{path}: state_dict is not a mapping of tensors")
    try:
        result = module.load_state_dict(ckpt["state_dict"], strict=False)
    except RuntimeError as e:
        detail = " ".join(str(e).split())
        raise NtcError(f"{path}: state_dict does not match arch {ckpt['arch']!r}: {detail[:300]}") from None
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f"missing keys {result.missing_keys[:5]}")
        if result.unexpected_keys:
            parts.append(f"unexpected keys {result.unexpected_keys[:5]}")
        raise NtcError(f"{path}: state_dict does not match arch {ckpt['arch']!r}: {'; '.join(parts)}")
    return module.eval()


def read_meta(path: str | os.PathLike) -> dict:
    """The `meta` a checkpoint was saved with ({} when none)."""
    ckpt = _read(Path(path))
    return ckpt.get("meta", {}) if isinstance(ckpt, dict) else {}


def read_arch(path: str | os.PathLike) -> str:
    """The architecture a checkpoint was saved as, without building the module."""
    ckpt = _read(Path(path))
    if not isinstance(ckpt, dict) or "arch" not in ckpt:
        raise NtcError(f"{path}: not an ntc-export checkpoint (no 'arch')")
    return str(ckpt["arch"])


__all__ = ["save", "load", "read_meta", "read_arch", "FORMAT"]
