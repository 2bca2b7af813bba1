"""A minimal protobuf text-format writer for Triton model configurations (config.pbtxt).

Dicts are messages, lists are repeated fields, `Enum` values are written bare; tests parse every file we write with
tritonclient's model_config_pb2, so the writer needs no protobuf dependency itself.
"""

import json


class Enum(str):
    """An enum value (TYPE_FP32, KIND_GPU, ...): written without quotes."""


def _scalar(value) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string literal is a valid text-format string


def _field(key: str, value, indent: str) -> list[str]:
    if isinstance(value, dict):
        inner = [line for k, v in value.items() for line in _field(k, v, indent + "  ")]
        return [f"{indent}{key} {{", *inner, f"{indent}}}"]
    if isinstance(value, list):
        if value and all(not isinstance(v, (dict, list)) for v in value):
            return [f"{indent}{key}: [ {', '.join(_scalar(v) for v in value)} ]"]
        return [line for v in value for line in _field(key, v, indent)]
    return [f"{indent}{key}: {_scalar(value)}"]


def to_pbtxt(message: dict) -> str:
    """The text format of `message` (a dict of fields; maps are written as repeated {key, value} entries)."""
    return "\n".join(line for k, v in message.items() for line in _field(k, v, "")) + "\n"
