"""ntc::WindowAttention v1 as a Python IPluginV3 (TensorRT-RTX or TensorRT): shapes and types from the contract;
enqueue calls libntc_kernels.so through ctypes (only at run time: AOT builds never enqueue)."""

import ctypes

import numpy as np

from ..trt_plugin_base import check_status, kernel
from .contract import FIELDS, OP


def field_types(trt) -> list[tuple[str, object]]:
    i32, f32 = trt.PluginFieldType.INT32, trt.PluginFieldType.FLOAT32
    return [("heads", i32), ("window", i32), ("shift", i32), ("scale", f32)]


def plugin_class(trt, base):
    """The WindowAttention plugin class over the shared `base` plugin of one TensorRT module."""
    dim_prod = trt.DimensionOperation.PROD
    float_types = (trt.float32, trt.float16, trt.bfloat16)
    dtype_codes = {trt.float32: 0, trt.float16: 1, trt.bfloat16: 2}

    class WindowAttentionPlugin(base):
        op = OP

        def check_fields(self):
            f = self.fields
            f.setdefault("shift", 0)
            if not f.get("heads") or not f.get("window") or f.get("scale") is None:
                raise ValueError(f"ntc::WindowAttention: bad fields {f}")

        def get_output_data_types(self, input_types):
            return [input_types[0]]

        def get_output_shapes(self, inputs, shape_inputs, exprs):
            q = inputs[0]
            if len(q) != 4:
                raise ValueError(f"ntc::WindowAttention: q must be [BW, heads, T, hd], got rank {len(q)}")
            out = trt.DimsExprs(3)
            out[0], out[1] = q[0], q[2]
            out[2] = exprs.operation(dim_prod, q[1], q[3])
            return [out]

        def supports_format_combination(self, pos, in_out, num_inputs):
            desc = in_out[pos].desc
            if desc.format != trt.TensorFormat.LINEAR or desc.type not in float_types:
                return False
            return pos == 0 or desc.type == in_out[0].desc.type

        def get_fields_to_serialize(self):
            f = self.fields
            # PluginField keeps a raw pointer: the arrays must outlive the collection, so they live on self.
            self._serialized = [np.array([int(f[k])], dtype=np.int32) for k in ("heads", "window", "shift")]
            self._serialized.append(np.array([float(f["scale"])], dtype=np.float32))
            kinds = [trt.PluginFieldType.INT32] * 3 + [trt.PluginFieldType.FLOAT32]
            return trt.PluginFieldCollection([trt.PluginField(k, a, kind) for k, a, kind in
                                              zip(FIELDS, self._serialized, kinds)])

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            bw, heads, _, head_dim = tuple(input_desc[0].dims)
            n_windows = tuple(input_desc[4].dims)[0]
            fn = kernel("ntc_window_attention_cuda", [ctypes.c_void_p] * 5 + [ctypes.c_int] * 5
                         + [ctypes.c_float, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p])
            check_status(self.op, fn(*inputs[:5], bw, n_windows, heads, int(self.fields["window"]), head_dim,
                                      float(self.fields["scale"]), dtype_codes[input_desc[0].type], outputs[0],
                                      stream))

    return WindowAttentionPlugin
