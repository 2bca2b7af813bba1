"""Pass `decompose_bc_decode`: BC4/BC5 ntc::BcDecode nodes -> standard ONNX integer ops (opset 18).

For runtimes without our custom op. Per 64-bit BC4 half: the two INT32 words become unsigned 32-bit values (Cast to
int64, BitwiseAnd 0xFFFFFFFF, Cast to uint64); endpoints and the 48 index bits come out with BitShift/BitwiseAnd;
the 8-entry palette is integer arithmetic with truncating Div (bcdec's rule) chosen by Where(e0 > e1);
GatherElements picks each texel; Reshape/Transpose lay the texels out as nchw or tokens; Cast + Div give value/255.
Other formats stay as ntc::BcDecode nodes.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...util.errors import NtcError
from ..domain import DOMAIN, drop_unused_domain, standard_opset
from .torch_op import PLUGIN_OP

MIN_OPSET = 18  # BitwiseAnd / BitwiseOr
DECOMPOSABLE = ("bc4", "bc5")


class _Builder:
    """Collects the nodes and constants of one decomposed BcDecode node under a unique name prefix."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.count = 0

    def name(self, what: str) -> str:
        self.count += 1
        return f"{self.prefix}/{what}_{self.count}"

    def const(self, value, dtype) -> str:
        out = self.name("const")
        tensor = numpy_helper.from_array(np.asarray(value, dtype=dtype), out + "_value")
        self.nodes.append(helper.make_node("Constant", [], [out], value=tensor, name=out))
        return out

    def op(self, op_type: str, inputs, output: str | None = None, **attrs) -> str:
        out = output or self.name(op_type)
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=self.name(op_type + "_node"), **attrs))
        return out


def _bc4_texels(b: _Builder, words_u64: str, half: int) -> str:
    """uint64 words [B, by, bx, W] -> int64 texel values [B, by, bx, 16] of the BC4 block in words [2h, 2h+1]."""
    lo = b.op("Gather", [words_u64, b.const(2 * half, np.int64)], axis=-1)
    hi = b.op("Gather", [words_u64, b.const(2 * half + 1, np.int64)], axis=-1)
    right, left = "RIGHT", "LEFT"
    byte = b.const(0xFF, np.uint64)
    e0 = b.op("BitwiseAnd", [lo, byte])
    e1 = b.op("BitwiseAnd", [b.op("BitShift", [lo, b.const(8, np.uint64)], direction=right), byte])
    index_bits = b.op("BitwiseOr", [b.op("BitShift", [lo, b.const(16, np.uint64)], direction=right),
                                    b.op("BitShift", [hi, b.const(16, np.uint64)], direction=left)])
    shifts = b.const(np.arange(16) * 3, np.uint64)
    idx = b.op("BitwiseAnd", [b.op("BitShift", [b.op("Unsqueeze", [index_bits, b.const([-1], np.int64)]), shifts],
                                    direction=right), b.const(7, np.uint64)])
    idx = b.op("Cast", [idx], to=TensorProto.INT64)
    unsq = b.const([-1], np.int64)
    e0 = b.op("Unsqueeze", [b.op("Cast", [e0], to=TensorProto.INT64), unsq])  # [B, by, bx, 1]
    e1 = b.op("Unsqueeze", [b.op("Cast", [e1], to=TensorProto.INT64), unsq])
    w8 = np.array([0, 7, 1, 2, 3, 4, 5, 6], np.int64)
    w6 = np.array([0, 5, 1, 2, 3, 4, 0, 0], np.int64)
    eight = b.op("Div", [b.op("Add", [b.op("Mul", [e0, b.const(7 - w8, np.int64)]),
                                      b.op("Mul", [e1, b.const(w8, np.int64)])]), b.const(7, np.int64)])
    six = b.op("Div", [b.op("Add", [b.op("Mul", [e0, b.const(5 - w6, np.int64)]),
                                    b.op("Mul", [e1, b.const(w6, np.int64)])]), b.const(5, np.int64)])
    # Entries 6 and 7 of the 6-value palette are the constants 0 and 255.
    six = b.op("Add", [b.op("Mul", [six, b.const([1, 1, 1, 1, 1, 1, 0, 0], np.int64)]),
                       b.const([0, 0, 0, 0, 0, 0, 0, 255], np.int64)])
    palette = b.op("Where", [b.op("Greater", [e0, e1]), eight, six])  # [B, by, bx, 8]
    return b.op("GatherElements", [palette, idx], axis=-1)


def _decompose_node(node: onnx.NodeProto, fmt: str, layout: str, dtype: str) -> list[onnx.NodeProto]:
    b = _Builder(node.name or f"bc_decode_{id(node)}")
    blocks = node.input[0]
    words = b.op("Cast", [b.op("BitwiseAnd", [b.op("Cast", [blocks], to=TensorProto.INT64),
                                              b.const(0xFFFFFFFF, np.int64)])], to=TensorProto.UINT64)
    unsq = b.const([-1], np.int64)
    planes = [b.op("Unsqueeze", [_bc4_texels(b, words, h), unsq]) for h in range(1 if fmt == "bc4" else 2)]
    texels = planes[0] if len(planes) == 1 else b.op("Concat", planes, axis=-1)  # [B, by, bx, 16, C]
    c = len(planes)
    texels = b.op("Reshape", [texels, b.const([0, 0, 0, 4, 4, c], np.int64)])
    image = b.op("Transpose", [texels], perm=[0, 1, 3, 2, 4, 5])  # [B, by, 4, bx, 4, C]
    if layout == "tokens":
        arranged = b.op("Reshape", [image, b.const([0, -1, c], np.int64)])
    else:
        dims = b.op("Slice", [b.op("Shape", [blocks]), b.const([0], np.int64), b.const([3], np.int64)])
        hw = b.op("Mul", [dims, b.const([1, 4, 4], np.int64)])
        shape = b.op("Concat", [hw, b.const([c], np.int64)], axis=0)
        arranged = b.op("Transpose", [b.op("Reshape", [image, shape])], perm=[0, 3, 1, 2])
    scaled = b.op("Div", [b.op("Cast", [arranged], to=TensorProto.FLOAT), b.const(255.0, np.float32)],
                  output=None if dtype == "float16" else node.output[0])
    if dtype == "float16":
        b.op("Cast", [scaled], output=node.output[0], to=TensorProto.FLOAT16)
    return b.nodes


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: a.s.decode() for a in node.attribute if a.type == onnx.AttributeProto.STRING}


def decompose_bc_decode(model: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of `model` with every BC4/BC5 ntc::BcDecode node replaced by standard opset-18 ops."""
    opset = standard_opset(model)
    targets = [n for n in model.graph.node if n.domain == DOMAIN and n.op_type == PLUGIN_OP
               and _attrs(n).get("format") in DECOMPOSABLE]
    if not targets:
        return model
    if opset < MIN_OPSET:
        raise NtcError(f"BcDecode decomposition needs ONNX opset >= {MIN_OPSET}; the model has opset {opset}")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    nodes = []
    for node in model.graph.node:
        attrs = _attrs(node)
        if node.domain == DOMAIN and node.op_type == PLUGIN_OP and attrs.get("format") in DECOMPOSABLE:
            if attrs.get("plugin_version", "1") != "1":
                raise NtcError(f"BcDecode node {node.name!r}: plugin_version {attrs.get('plugin_version')!r} "
                               "is not 1")
            nodes += _decompose_node(node, attrs["format"], attrs.get("layout", "tokens"),
                                     attrs.get("dtype", "float32"))
        else:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    drop_unused_domain(model, DOMAIN)
    return model
