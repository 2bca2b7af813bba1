"""Calibration tokens: load (array, TokenSet or .npz), validate against the model input, hash for the cache key."""

import hashlib
from pathlib import Path

import numpy as np
import onnx

from ..errors import NtcError

MIN_SAMPLES = 16
_NPZ_KEYS = ("patch_tokens", "tokens")


def load_tokens(source) -> np.ndarray:
    """float32 tokens from an array, an object with `.patch_tokens`, or an .npz (key patch_tokens/tokens, or its
    only array)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise NtcError(f"{path}: no such token file")
        try:
            with np.load(path) as z:
                keys = [k for k in _NPZ_KEYS if k in z.files] or (z.files if len(z.files) == 1 else [])
                if not keys:
                    raise NtcError(f"{path}: no 'patch_tokens' array (found {', '.join(z.files) or 'nothing'})")
                return np.asarray(z[keys[0]], np.float32)
        except (ValueError, OSError, EOFError) as e:
            raise NtcError(f"{path}: not a readable .npz token file ({str(e).splitlines()[0][:200]})") from None
    if hasattr(source, "patch_tokens"):
        source = source.patch_tokens
    return np.asarray(source, np.float32)


def model_input(model: onnx.ModelProto) -> tuple[str, list]:
    """(name, dims) of the model's token input; dims are ints or None where symbolic."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise NtcError(f"calibration expects a model with one token input, found {len(inputs)}")
    if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(inputs[0].type.tensor_type.elem_type)
        raise NtcError(f"model input {inputs[0].name!r} is {dtype}; calibration feeds float32 tokens")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    return inputs[0].name, dims


def check_tokens(tokens: np.ndarray, name: str, dims: list, what: str = "calibration") -> np.ndarray:
    """Raise NtcError on too few samples, a shape that does not fit the model input, or NaN/Inf."""
    expected = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
    if tokens.ndim != len(dims) or any(d is not None and d != t for d, t in zip(dims[1:], tokens.shape[1:])):
        raise NtcError(f"{what} tokens have shape {list(tokens.shape)}; model input {name!r} expects {expected}")
    if len(tokens) < MIN_SAMPLES:
        raise NtcError(f"{what} data too small: {len(tokens)} samples, need at least {MIN_SAMPLES}")
    bad = ~np.isfinite(tokens)
    if bad.any():
        raise NtcError(f"{what} tokens contain {int(bad.sum())} NaN/Inf values (first in sample "
                       f"{int(np.argwhere(bad)[0][0])})")
    return np.ascontiguousarray(tokens, np.float32)


def tokens_hash(tokens: np.ndarray | None) -> str | None:
    if tokens is None:
        return None
    h = hashlib.sha256(f"{tokens.dtype}{tokens.shape}".encode())
    h.update(np.ascontiguousarray(tokens).tobytes())
    return h.hexdigest()


def file_hash(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
