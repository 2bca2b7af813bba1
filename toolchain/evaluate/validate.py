"""Validate artifacts against the PyTorch golden outputs on held-out real tokens.

A record: {model, precision, target, backend, output, max_abs, rel_l2, cosine, snr_db, task_metric, ...}. Token sets
on several grids run grid group by grid group; a record's fidelity is over every group's outputs (concat_outputs).
"""

from pathlib import Path

import numpy as np
import torch

from ..backend.onnxrt.runner import OrtRunner
from ..backend.torch.runner import TorchRunner
from .feeds import feed_groups, grouped, num_samples
from ..models.grid import grid_of
from ..util.errors import NtcError
from .fidelity import concat_outputs, fidelity

# Defaults that make validation fail when missed: (metric, comparison, bound).
THRESHOLDS = {
    "fp32": ("rel_l2", "<=", 1e-5),
    "fp16": ("cosine", ">=", 0.9995),
    "bf16": ("cosine", ">=", 0.999),
    "int8": ("cosine", ">=", 0.999),
    "fp8": ("cosine", ">=", 0.998),
    "int4": ("cosine", ">=", 0.999),  # weight-only: the same bar as int8 (layers may stay fp16 to meet it)
    "nvfp4": ("cosine", ">=", 0.998),  # weight-only FP4: the FP8 bar
}


def check_tokens_fit(module: torch.nn.Module, tokens: np.ndarray) -> None:
    """A one-line NtcError when patch tokens [N, h, w, D] (or [N, h*w, D] on a square grid) cannot feed the model:
    their width, or a grid its family cannot take (the module's own grid check on one image, before any work)."""
    if tokens.ndim not in (3, 4):
        raise NtcError(f"tokens must be [N, h, w, D] (or [N, h*w, D] on a square grid); got shape {list(tokens.shape)}")
    dim = getattr(module, "input_dim", tokens.shape[-1])
    if tokens.shape[-1] != dim:
        raise NtcError(f"model {getattr(module, 'arch', '?')} takes {dim}-d tokens; the data has {tokens.shape[-1]}-d")
    check = getattr(module, "check_token_grid", None)
    if check is None:  # a foreign graph takes flat tokens [B, N, D]: its N is ORT's to judge
        return
    grid_of(tokens, "tokens")  # flat tokens must be a square grid
    check(torch.from_numpy(np.ascontiguousarray(tokens[:1], np.float32)))  # the family's own rule


def run_batched(runner, feeds: dict[str, np.ndarray], batch: int = 32) -> dict[str, np.ndarray]:
    """Run `runner` over feeds in batches (axis 0) and concatenate each output."""
    parts: dict[str, list] = {}
    n = len(next(iter(feeds.values())))
    for start in range(0, n, batch):
        out = runner.run({k: v[start:start + batch] for k, v in feeds.items()})
        for name, value in out.items():
            parts.setdefault(name, []).append(np.asarray(value, dtype=np.float32))
    return {name: np.concatenate(v) for name, v in parts.items()}


def run_groups(runner, feeds, batch: int = 32) -> dict[str, np.ndarray]:
    """`run_batched` over a feeds dict, or over each FeedGroups group, the outputs combined by concat_outputs."""
    return concat_outputs([run_batched(runner, f, batch) for _, f in feed_groups(feeds)])


def accuracy(logits: np.ndarray | None, labels: np.ndarray | None) -> float | None:
    if logits is None or labels is None:
        return None
    return float((logits.argmax(-1) == labels).mean())


# Integer outputs (codebook indices from an encoder graph): the share of indices equal to PyTorch's. Near-ties (two
# codewords equally near to rounding) flip: in fp32 only where runtimes sum in another order (measured 1 in 500,000
# on the zoo), in reduced precision at most 1 in 100.
INDEX_THRESHOLDS = {"fp32": ("index_agreement", ">=", 0.9999)}
INDEX_DEFAULT = ("index_agreement", ">=", 0.99)


def passes(record: dict) -> bool:
    metric, op, bound = _threshold(record["precision"], "index_agreement" in record)
    value = record[metric]
    return value <= bound if op == "<=" else value >= bound


def _threshold(precision: str, indices: bool) -> tuple[str, str, float]:
    if indices:
        return INDEX_THRESHOLDS.get(precision, INDEX_DEFAULT)
    return THRESHOLDS.get(precision, ("cosine", ">=", 0.99))


def compare_outputs(golden: dict, got: dict, labels, index_outputs=(), *, samples: int | None = None,
                    **ids) -> list[dict]:
    """One record per output of `got` against `golden`, with the task metric of `got`'s logits; outputs named in
    `index_outputs` (integer indices) also get their agreement with the golden indices, which decides the pass
    (`samples`: the images compared, where outputs of several grids were flattened together)."""
    task = accuracy(got.get("logits"), labels)
    task_golden = accuracy(golden.get("logits"), labels)
    records = []
    for name, ref in golden.items():
        if name not in got:
            raise NtcError(f"{ids.get('backend')} result lacks output {name!r}")
        record = {**ids, "output": name, **fidelity(ref, got[name]), "task_metric": task,
                  "task_metric_golden": task_golden, "task_metric_name": "accuracy" if task is not None else None,
                  "samples": int(len(ref) if samples is None else samples), "executed": True}
        if name in index_outputs:
            record["index_agreement"] = float(np.mean(np.asarray(ref) == np.asarray(got[name])))
        metric, op, bound = _threshold(ids["precision"], name in index_outputs)
        record["threshold"] = f"{metric} {op} {bound:g}"
        record["pass"] = passes(record)
        records.append(record)
    return records


def integer_outputs(onnx_path) -> set[str]:
    """Names of the ONNX file's integer outputs (indices)."""
    import onnx

    ints = (onnx.TensorProto.INT32, onnx.TensorProto.INT64)
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return {o.name for o in graph.output if o.type.tensor_type.elem_type in ints}


def golden_outputs(module: torch.nn.Module, feeds, batch: int = 32) -> dict[str, np.ndarray]:
    """PyTorch's outputs on `feeds` (a feeds dict or FeedGroups, combined as concat_outputs), or the module's given
    golden outputs (an ONNX file's --golden, in the validation data's order) picked the same way."""
    groups = feed_groups(feeds)
    given = getattr(module, "golden", None)
    if given is not None:
        n = num_samples(feeds)
        short = [k for k, v in given.items() if len(v) < n]
        if short:
            raise NtcError(f"golden outputs {', '.join(short)} hold fewer samples than the {n} validated")
        return concat_outputs([{k: np.asarray(v[idx], np.float32) for k, v in given.items()} for idx, _ in groups])
    names = getattr(module, "input_names", ["tokens"])
    return run_groups(TorchRunner(module, input_names=names), feeds, batch)


def _model_tokens(module, tokens: np.ndarray) -> np.ndarray:
    """Patch tokens [N, h, w, D] in the form the model's inputs are made from: on their grid, except flat
    [N, h*w, D] for a graph fed as is whose token input is flat (a foreign graph: read off its example input)."""
    example = None if getattr(module, "prepare_inputs", None) else getattr(module, "example_inputs", None)
    if example is not None and example(1, 1)[0].dim() == 3:
        return tokens.reshape(len(tokens), -1, tokens.shape[-1])
    return tokens


def _prepare(module, tokens: np.ndarray, fields: dict) -> dict[str, np.ndarray]:
    prepare = getattr(module, "prepare_inputs", None)
    return prepare(tokens, **fields) if prepare else {"tokens": tokens}


def model_feeds(module: torch.nn.Module, tokens):
    """The model's inputs for held-out patch tokens (an array [N, h, w, D], or [N, h*w, D] on a square grid) or a
    token set, whose extra fields (the ViT's CLS attention, keys) feed models that read them (`token_fields`), after
    checking every grid fits before any work: a feeds dict, or FeedGroups (one per grid) for a set of several grids."""
    from ..data.tokens import model_fields

    if hasattr(type(tokens), "by_grid"):  # a token set (asked of its class: a ragged set has no single grid)
        source = tokens.meta.get("path") or tokens.meta.get("source") or "the token set"
        groups = tokens.by_grid()
        fields = [model_fields(module, ts, source) for _, ts in groups]
        for _, ts in groups:
            check_tokens_fit(module, ts.grid_tokens[:1])
        return grouped([(idx, _prepare(module, _model_tokens(module, ts.grid_tokens), f))
                        for (idx, ts), f in zip(groups, fields)])
    if getattr(module, "token_fields", ()):
        model_fields(module, None, "a bare token array")
    check_tokens_fit(module, tokens)
    return _prepare(module, _model_tokens(module, tokens) if tokens.ndim == 4 else tokens, {})


def validate_onnx(model_name: str, module: torch.nn.Module, onnx_paths: dict[str, Path], tokens=None,
                  labels: np.ndarray | None = None, golden: dict | None = None, batch: int = 32,
                  feeds=None) -> list[dict]:
    """ONNX Runtime records for every precision's ONNX file against the PyTorch golden outputs on `tokens` (an array
    or a token set; `feeds`: the model's inputs for them, when the caller has made them already). On several grids,
    each grid group runs on its own and every record reads all groups' outputs (`labels`: in the set's order)."""
    feeds = feeds if feeds is not None else model_feeds(module, tokens)
    golden = golden if golden is not None else golden_outputs(module, feeds, batch)
    groups = feed_groups(feeds)
    order = np.concatenate([idx for idx, _ in groups])  # the images in the order outputs are combined
    labels = None if labels is None else np.asarray(labels)[order]
    records = []
    for precision, path in onnx_paths.items():
        runner = OrtRunner(path)
        got = run_groups(runner, feeds, batch)
        reference, extra = golden, {}
        if getattr(module, "exact_selection", False) and runner.rounds_inputs:
            # A selection (TopK/ArgMax over scores ~1e-6 apart) is discontinuous in its inputs: a graph fed fp16 or
            # int8 tokens never sees the fp32 values, so its reference is PyTorch on those same rounded inputs;
            # the distance to the fp32-input golden (the rounding's own flips) is kept beside it, not hidden.
            seen = grouped([(idx, runner.seen_inputs(f)) for idx, f in groups])
            reference = golden_outputs(module, seen, batch)
            extra = {"golden_inputs": f"{precision}-rounded",
                     "cosine_vs_fp32_inputs": {k: fidelity(golden[k], got[k])["cosine"] for k in golden}}
        rows = compare_outputs(reference, got, labels, integer_outputs(path), samples=len(order), model=model_name,
                               precision=precision, target=runner.target, backend="onnxruntime", artifact=str(path))
        records += [{**r, **({"golden_inputs": extra["golden_inputs"],
                              "cosine_vs_fp32_inputs": extra["cosine_vs_fp32_inputs"][r["output"]]} if extra else {})}
                    for r in rows]
    return records


def failures(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("executed", True) and not r.get("pass", True)]
