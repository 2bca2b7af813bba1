"""Triton model configurations (as dicts for pbtxt.to_pbtxt): a TensorRT plan model, its CPU twin on the Python
backend, the payload-unpacking host step and the payload -> tokens -> embeddings ensemble."""

from ..util.errors import NtcError
from .pbtxt import Enum

# Manifest dtype names (backend/trt/build_log.normalize_dtype) -> Triton data types.
TRITON_TYPES = {"fp32": "TYPE_FP32", "fp16": "TYPE_FP16", "bf16": "TYPE_BF16", "int32": "TYPE_INT32",
                "int64": "TYPE_INT64", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL"}
QUEUE_DELAY_US = 2000  # long enough for concurrent requests to meet in one batch, short against an inference
CPU_QUEUE_DELAY_US = 5000  # a CPU twin's clients are slower to send than a GPU's to answer: wait a little longer


def cc_key(sm: int) -> str:
    """Triton's compute-capability key for an SM number: 86 -> "8.6", 120 -> "12.0"."""
    return f"{sm // 10}.{sm % 10}"


def plan_filename(sm: int) -> str:
    return f"model.sm{sm}.plan"


def triton_type(dtype: str) -> Enum:
    if dtype not in TRITON_TYPES:
        raise NtcError(f"engine tensor type {dtype!r} has no Triton data type ({', '.join(TRITON_TYPES)})")
    return Enum(TRITON_TYPES[dtype])


def io_signature(entry: dict) -> dict:
    """max_batch_size and per-tensor (name, dtype, dims without the batch axis) from an engine's manifest entry:
    dims come from the optimization profile (-1 where min != max), the batch limit from its max batch."""
    profiles = entry.get("profiles") or {}
    batches = {shape[2][0] for shape in profiles.values()}
    if len(batches) != 1:
        raise NtcError(f"{entry['model']} {entry['target']}: inputs disagree on the max batch ({sorted(batches)})")
    inputs = []
    for tensor in entry["inputs"]:
        lo, _, hi = profiles.get(tensor["name"], [tensor["shape"]] * 3)
        dims = [d if a == b else -1 for a, b, d in zip(lo[1:], hi[1:], hi[1:])]
        inputs.append({"name": tensor["name"], "data_type": tensor["dtype"], "dims": dims})
    outputs = [{"name": t["name"], "data_type": t["dtype"], "dims": list(t["shape"][1:])} for t in entry["outputs"]]
    return {"max_batch_size": batches.pop(), "input": inputs, "output": outputs}


def _tensors(tensors: list[dict]) -> list[dict]:
    return [{"name": t["name"], "data_type": triton_type(t["data_type"]), "dims": t["dims"]} for t in tensors]


def _batching(signature: dict, delay_us: int = QUEUE_DELAY_US) -> dict:
    return {"max_batch_size": signature["max_batch_size"], "input": _tensors(signature["input"]),
            "output": _tensors(signature["output"]),
            "dynamic_batching": {"max_queue_delay_microseconds": delay_us}}


def plan_config(name: str, signature: dict, plans: dict[int, str], n_profiles: int = 1) -> dict:
    """platform tensorrt_plan: one plan per compute capability, one GPU instance group per optimization profile."""
    if not plans:
        raise NtcError(f"{name}: no plans to serve")
    return {"name": name, "platform": "tensorrt_plan", **_batching(signature),
            "default_model_filename": plans[min(plans)],
            "cc_model_filenames": [{"key": cc_key(sm), "value": f} for sm, f in sorted(plans.items())],
            "instance_group": [{"kind": Enum("KIND_GPU"), "count": 1, "profile": [str(p)]} for p in range(n_profiles)]}


def python_config(name: str, signature: dict, parameters: dict | None = None) -> dict:
    """backend python on CPU instances (a CPU twin or a host step), same tensors and batching as the plan model."""
    config = {"name": name, "backend": "python", **_batching(signature, CPU_QUEUE_DELAY_US),
              "instance_group": [{"kind": Enum("KIND_CPU"), "count": 1}]}
    if parameters:
        config["parameters"] = [{"key": k, "value": {"string_value": str(v)}} for k, v in parameters.items()]
    return config


def ensemble_config(name: str, max_batch: int, steps: list[dict], inputs: list[dict], outputs: list[dict]) -> dict:
    """platform ensemble: `steps` are {model, input_map {model input: tensor}, output_map {model output: tensor}}."""
    schedule = [{"model_name": s["model"], "model_version": -1,
                 "input_map": [{"key": k, "value": v} for k, v in s["input_map"].items()],
                 "output_map": [{"key": k, "value": v} for k, v in s["output_map"].items()]} for s in steps]
    return {"name": name, "platform": "ensemble", "max_batch_size": max_batch, "input": _tensors(inputs),
            "output": _tensors(outputs), "ensemble_scheduling": {"step": schedule}}
