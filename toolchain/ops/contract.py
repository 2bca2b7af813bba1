"""Every ntc op's contract by op name, and the check that an ONNX node follows one."""

import onnx

from ..util.errors import NtcError
from .bc_decode import contract as bc_decode
from .domain import DOMAIN, VERSION
from .window_attention import contract as window_attention

CONTRACTS = {c.OP: c for c in (bc_decode, window_attention)}


def node_fields(node: onnx.NodeProto) -> dict:
    """The node's attributes as Python values (strings decoded)."""
    values = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def validate_node(node: onnx.NodeProto) -> None:
    """NtcError unless an ONNX node in domain ntc follows a plugin contract (op, version, inputs, fields)."""
    where = f"node {node.name or node.output[0]!r} ({node.domain}::{node.op_type})"
    contract = CONTRACTS.get(node.op_type)
    if contract is None:
        known = ", ".join(f"{DOMAIN}::{op} v{VERSION}" for op in CONTRACTS)
        raise NtcError(f"unknown custom op {node.domain}::{node.op_type} in {where}: no plugin implements it "
                       f"(known: {known})")
    fields = node_fields(node)
    version = str(fields.pop("plugin_version", VERSION))
    if version != VERSION:
        raise NtcError(f"{where}: plugin_version {version!r} is not supported (only {VERSION!r})")
    inputs = getattr(contract, "INPUTS", None)
    if inputs and len(node.input) != len(inputs):
        raise NtcError(f"{where}: needs {len(inputs)} inputs ({', '.join(inputs)}), got {len(node.input)}")
    contract.check_fields(fields, where)
