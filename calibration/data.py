"""Calibration data: float tokens (array, token set or .npz) or a feeds dict {input name: array}, validated against
the model's inputs and hashed for the cache key. A token set whose images lie on several grids gives FeedGroups: one
feeds dict per grid, batched group by group (their shapes differ)."""

import hashlib
from pathlib import Path

import numpy as np
import onnx

from ..evaluate.feeds import FeedGroups, grouped
from ..util.errors import NtcError

MIN_SAMPLES = 16


def _shaped(groups, rank: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Groups of tokens on their grid [n, h, w, D] as float32 for a graph input of `rank` (3: flat [n, h*w, D])."""
    return [(idx, np.ascontiguousarray(t if rank == 4 else t.reshape(len(t), -1, t.shape[-1]), dtype=np.float32))
            for idx, t in groups]


def token_arrays(source, rank: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """(indices, float32 patch tokens) per grid group from an array, a token set or a token file (a token set file,
    ragged or not, or decoded tokens from `ntc-export decompress`), shaped for a graph input of `rank`: 4 takes
    [N, h, w, D] (a square flat array is put on its grid), 3 takes [N, h*w, D]."""
    if isinstance(source, (str, Path)):
        from ..codec.payload import is_decoded_file, read_decoded
        from ..data.tokens import load_tokens

        if is_decoded_file(source):
            return _shaped(read_decoded(source), rank)
        source = load_tokens(source)
    if hasattr(type(source), "by_grid"):  # a token set (asked of its class: a ragged set has no single grid)
        return _shaped([(idx, ts.grid_tokens) for idx, ts in source.by_grid()], rank)
    arr = np.asarray(source, np.float32)
    side = int(round(arr.shape[1] ** 0.5)) if arr.ndim == 3 else 0
    if rank == 4 and arr.ndim == 3 and side * side == arr.shape[1]:
        arr = arr.reshape(len(arr), side, side, arr.shape[2])
    elif rank == 3 and arr.ndim == 4:
        arr = arr.reshape(len(arr), -1, arr.shape[3])
    return [(np.arange(len(arr)), arr)]


def load_tokens(source) -> np.ndarray:
    """float32 patch tokens [N, h*w, D] of one grid from an array, a token set or a token file."""
    groups = token_arrays(source)
    if len(groups) != 1:
        raise NtcError(f"{source if isinstance(source, (str, Path)) else 'the token set'} holds images on several "
                       "grids: give the tokens of one grid")
    return groups[0][1]


def model_input(model: onnx.ModelProto) -> tuple[str, list]:
    """(name, dims) of the model's token input; dims are ints or None where symbolic."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise NtcError(f"calibration expects a model with one token input, found {len(inputs)}")
    if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(inputs[0].type.tensor_type.elem_type)
        raise NtcError(f"model input {inputs[0].name!r} is {dtype}; calibration feeds float32 tokens (give a feeds "
                       f"dict {{{inputs[0].name!r}: array}} instead, e.g. module.prepare_inputs(patch_tokens))")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    return inputs[0].name, dims


def check_tokens(tokens: np.ndarray, name: str, dims: list, what: str = "calibration",
                 min_samples: int = MIN_SAMPLES) -> np.ndarray:
    """Raise NtcError on too few samples, a shape that does not fit the model input, or NaN/Inf."""
    expected = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
    if tokens.ndim != len(dims) or any(d is not None and d != t for d, t in zip(dims[1:], tokens.shape[1:])):
        raise NtcError(f"{what} tokens have shape {list(tokens.shape)}; model input {name!r} expects {expected}")
    _check_count(len(tokens), what, min_samples)
    bad = ~np.isfinite(tokens)
    if bad.any():
        raise NtcError(f"{what} tokens contain {int(bad.sum())} NaN/Inf values (first in sample "
                       f"{int(np.argwhere(bad)[0][0])})")
    return np.ascontiguousarray(tokens, np.float32)


def model_inputs(model: onnx.ModelProto) -> list[tuple[str, np.dtype, list]]:
    """(name, numpy dtype, dims) of every graph input that is not an initializer; dims None where symbolic."""
    inits = {i.name for i in model.graph.initializer}
    out = []
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        t = inp.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        out.append((inp.name, np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)), dims))
    return out


def _fmt_dims(dims: list) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _check_feed(name: str, value, dtype: np.dtype, dims: list, what: str) -> np.ndarray:
    """One feed converted to the input's dtype; integer data must be integers that fit it exactly."""
    value = np.asarray(value)
    if value.ndim != len(dims) or any(d is not None and d != v for d, v in zip(dims[1:], value.shape[1:])):
        raise NtcError(f"{what} feed {name!r} has shape {list(value.shape)}; the model input expects "
                       f"{_fmt_dims(dims)}")
    if dtype.kind == "f":
        if value.dtype.kind not in "fiu":
            raise NtcError(f"{what} feed {name!r} is {value.dtype}; the model input is {dtype}")
        out = np.ascontiguousarray(value, dtype)
        bad = ~np.isfinite(out)
        if bad.any():
            raise NtcError(f"{what} feed {name!r} contains {int(bad.sum())} NaN/Inf values (first in sample "
                           f"{int(np.argwhere(bad)[0][0])})")
        return out
    if value.dtype.kind != dtype.kind and not (dtype.kind in "iu" and value.dtype.kind in "iu"):
        raise NtcError(f"{what} feed {name!r} is {value.dtype}; the model input is {dtype}")
    out = np.ascontiguousarray(value.astype(dtype))
    if not np.array_equal(out, value):
        raise NtcError(f"{what} feed {name!r} has values outside {dtype}")
    return out


def _check_count(n: int, what: str, min_samples: int = MIN_SAMPLES) -> None:
    if n < min_samples:
        raise NtcError(f"{what} data too small: {n} samples, need at least {min_samples}")


def check_feeds(feeds: dict, model: onnx.ModelProto, what: str = "calibration",
                min_samples: int = MIN_SAMPLES) -> dict[str, np.ndarray]:
    """A feeds dict checked against every model input (names, dtype, shape, finite floats, one sample count)."""
    inputs = model_inputs(model)
    names = [n for n, _, _ in inputs]
    missing = [n for n in names if n not in feeds]
    extra = [n for n in feeds if n not in names]
    if missing or extra:
        raise NtcError(f"{what} feeds must name exactly the model inputs ({', '.join(names)}): "
                       + "; ".join(([f"missing {', '.join(map(repr, missing))}"] if missing else [])
                                   + ([f"not an input: {', '.join(map(repr, extra))}"] if extra else [])))
    out = {n: _check_feed(n, feeds[n], dtype, dims, what) for n, dtype, dims in inputs}
    counts = {n: len(v) for n, v in out.items()}
    if len(set(counts.values())) != 1:
        raise NtcError(f"{what} feeds differ in sample count: {counts}")
    _check_count(next(iter(counts.values())), what, min_samples)
    return out


def load_feeds(source, model: onnx.ModelProto, what: str = "calibration"):
    """Calibration data as checked feeds: a dict is checked input by input, FeedGroups group by group; anything else
    is float tokens for the model's single float input (FeedGroups when they lie on several grids)."""
    if isinstance(source, FeedGroups):
        groups = [(idx, check_feeds(f, model, what, min_samples=1)) for idx, f in source]
    elif isinstance(source, dict):
        return check_feeds(source, model, what)
    else:
        name, dims = model_input(model)
        groups = [(idx, {name: check_tokens(t, name, dims, what, min_samples=1)})
                  for idx, t in token_arrays(source, len(dims))]
    _check_count(sum(len(idx) for idx, _ in groups), what)
    return grouped(groups)


def feeds_hash(feeds) -> str | None:
    """sha256 of every feed (name, dtype, shape, bytes); a single feed hashes like `tokens_hash` (old caches stay
    valid: the model hash already pins the input name); FeedGroups hash each group with its image indices."""
    if feeds is None:
        return None
    if isinstance(feeds, FeedGroups):
        h = hashlib.sha256(b"groups")
        for idx, f in feeds:
            h.update(np.asarray(idx, np.int64).tobytes() + feeds_hash(f).encode())
        return h.hexdigest()
    if len(feeds) == 1:
        return tokens_hash(next(iter(feeds.values())))
    h = hashlib.sha256()
    for name in sorted(feeds):
        h.update(name.encode() + b"\0")
        h.update(tokens_hash(feeds[name]).encode())
    return h.hexdigest()


def tokens_hash(tokens: np.ndarray | None) -> str | None:
    if tokens is None:
        return None
    h = hashlib.sha256(f"{tokens.dtype}{tokens.shape}".encode())
    h.update(np.ascontiguousarray(tokens).tobytes())
    return h.hexdigest()


