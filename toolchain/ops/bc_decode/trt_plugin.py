"""ntc::BcDecode v1 as a Python IPluginV3 (TensorRT-RTX or TensorRT): shapes and types from the contract; enqueue
calls libntc_kernels.so through ctypes (only at run time: AOT builds never enqueue)."""

import ctypes

import numpy as np

from ...codec.formats import TABLE
from ...util.errors import NtcError
from ..domain import DOMAIN
from ..trt_plugin_base import check_status, kernel
from .contract import DTYPE_CODES, FIELDS, LAYOUT_CODES, OP, check_fields


def field_types(trt) -> list[tuple[str, object]]:
    return [(k, trt.PluginFieldType.CHAR) for k in FIELDS]


def plugin_class(trt, base):
    """The BcDecode plugin class over the shared `base` plugin of one TensorRT module."""
    dim_prod = trt.DimensionOperation.PROD

    class BcDecodePlugin(base):
        op = OP

        def check_fields(self):
            f = self.fields
            try:
                check_fields(f, f"{DOMAIN}::{OP}")
            except NtcError as e:
                raise ValueError(str(e)) from None
            fmt = TABLE[f["format"]]
            self.code, self.channels, self.words = fmt.code, fmt.channels, fmt.int32_words

        def get_output_data_types(self, input_types):
            return [trt.float32 if self.fields["dtype"] == "float32" else trt.float16]

        def get_output_shapes(self, inputs, shape_inputs, exprs):
            blocks = inputs[0]
            if len(blocks) != 4:
                raise ValueError(f"ntc::BcDecode: blocks must be [B, by, bx, W], got rank {len(blocks)}")
            if blocks[3].is_constant() and blocks[3].get_constant_value() != self.words:
                raise ValueError(f"ntc::BcDecode {self.fields['format']}: W must be {self.words}")
            four, sixteen, c = exprs.constant(4), exprs.constant(16), exprs.constant(self.channels)
            if self.fields["layout"] == "nchw":
                out = trt.DimsExprs(4)
                out[0], out[1] = blocks[0], c
                out[2] = exprs.operation(dim_prod, blocks[1], four)
                out[3] = exprs.operation(dim_prod, blocks[2], four)
            else:
                out = trt.DimsExprs(3)
                out[0], out[2] = blocks[0], c
                out[1] = exprs.operation(dim_prod, exprs.operation(dim_prod, blocks[1], blocks[2]), sixteen)
            return [out]

        def supports_format_combination(self, pos, in_out, num_inputs):
            desc = in_out[pos].desc
            if desc.format != trt.TensorFormat.LINEAR:
                return False
            return desc.type == (trt.int32 if pos == 0 else self.get_output_data_types(None)[0])

        def get_fields_to_serialize(self):
            # PluginField keeps a raw pointer: the arrays must outlive the collection, so they live on self.
            self._serialized = [np.frombuffer(self.fields[k].encode() + b"\0", dtype=np.int8)
                                for k in FIELDS]
            return trt.PluginFieldCollection([trt.PluginField(k, a, trt.PluginFieldType.CHAR)
                                              for k, a in zip(FIELDS, self._serialized)])

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            b, by, bx, _ = tuple(input_desc[0].dims)
            fn = kernel("ntc_bc_decode_cuda", [ctypes.c_void_p] + [ctypes.c_int] * 6 + [ctypes.c_void_p] * 2)
            check_status(self.op, fn(inputs[0], b, by, bx, self.code, LAYOUT_CODES[self.fields["layout"]],
                                      DTYPE_CODES[self.fields["dtype"]], outputs[0], stream))

    return BcDecodePlugin
