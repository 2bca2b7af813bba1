"""Python IPluginV3 plugins for ntc::BcDecode v1 and ntc::WindowAttention v1 (TensorRT-RTX or TensorRT).

Shapes and types follow the plugin contracts; enqueue calls libntc_kernels.so through ctypes (only at run time:
building an engine never calls enqueue, so AOT builds work without a GPU or the kernel library).
"""

import ctypes

import numpy as np

from .errors import NtcError

NAMESPACE = "ntc"
VERSION = "1"

# BcDecode contract: format -> (C ABI code, channels, int32 words per block).
BC_FORMATS = {
    "bc1": (0, 4, 2), "bc4": (1, 1, 2), "bc5": (2, 2, 4),
    "bc6h_uf16": (3, 3, 4), "bc6h_sf16": (4, 3, 4), "bc7": (5, 4, 4),
}
BC_LAYOUTS = {"nchw": 0, "tokens": 1}
BC_DTYPES = {"float32": 0, "float16": 1}
ATTN_INPUTS = ("q", "k", "v", "bias_table", "mask")
PLUGIN_OPS = {"BcDecode": ("format", "layout", "dtype"), "WindowAttention": ("heads", "window", "shift", "scale")}


def _attr_value(attr):
    import onnx

    value = onnx.helper.get_attribute_value(attr)
    return value.decode() if isinstance(value, bytes) else value


def validate_node(node) -> None:
    """NtcError unless an ONNX node in domain ntc follows a plugin contract (op, version, attributes)."""
    where = f"node {node.name or node.output[0]!r} ({node.domain}::{node.op_type})"
    if node.op_type not in PLUGIN_OPS:
        known = ", ".join(f"{NAMESPACE}::{op} v{VERSION}" for op in PLUGIN_OPS)
        raise NtcError(f"unknown custom op {node.domain}::{node.op_type} in {where}: no plugin implements it "
                       f"(known: {known})")
    attrs = {a.name: _attr_value(a) for a in node.attribute}
    version = str(attrs.pop("plugin_version", VERSION))
    if version != VERSION:
        raise NtcError(f"{where}: plugin_version {version!r} is not supported (only {VERSION!r})")
    missing = [f for f in PLUGIN_OPS[node.op_type] if f not in attrs and f != "shift"]
    if missing:
        raise NtcError(f"{where}: missing attribute(s) {', '.join(missing)}")
    if node.op_type == "BcDecode":
        for key, allowed in (("format", BC_FORMATS), ("layout", BC_LAYOUTS), ("dtype", BC_DTYPES)):
            if attrs[key] not in allowed:
                raise NtcError(f"{where}: {key}={attrs[key]!r}; choose from {', '.join(allowed)}")
    else:
        if len(node.input) != len(ATTN_INPUTS):
            raise NtcError(f"{where}: needs {len(ATTN_INPUTS)} inputs ({', '.join(ATTN_INPUTS)}), "
                           f"got {len(node.input)}")
        if int(attrs["heads"]) < 1 or int(attrs["window"]) < 1:
            raise NtcError(f"{where}: heads and window must be >= 1 (got {attrs['heads']}, {attrs['window']})")
        if not 0 <= int(attrs.get("shift", 0)) < int(attrs["window"]):
            raise NtcError(f"{where}: need 0 <= shift < window (got shift {attrs.get('shift')}, "
                           f"window {attrs['window']})")


def _field_value(field):
    """A plugin field's value as str / int / float (the parser passes strings as CHAR arrays)."""
    data = np.asarray(field.data)
    if data.dtype in (np.int8, np.uint8) and str(field.type).endswith("CHAR"):
        return data.tobytes().split(b"\0", 1)[0].decode()
    flat = data.ravel()
    if flat.size == 0:
        return None
    return float(flat[0]) if np.issubdtype(flat.dtype, np.floating) else int(flat[0])


def _kernel(name: str, argtypes):
    from .kernels import kernels_library

    fn = getattr(kernels_library(), name)
    fn.argtypes, fn.restype = argtypes, ctypes.c_int
    return fn


def _check_status(op: str, status: int) -> None:
    if status != 0:
        raise RuntimeError(f"{NAMESPACE}::{op} kernel returned {status}")


def make_plugin_classes(trt):
    """(BcDecodeCreator, WindowAttentionCreator) classes bound to one TensorRT module (tensorrt or tensorrt_rtx)."""
    dim_prod = trt.DimensionOperation.PROD
    float_types = (trt.float32, trt.float16, trt.bfloat16)
    dtype_codes = {trt.float32: 0, trt.float16: 1, trt.bfloat16: 2}

    class _Plugin(trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime):
        op = ""

        def __init__(self, fields: dict, phase=None):
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            self.plugin_name, self.plugin_namespace, self.plugin_version = self.op, NAMESPACE, VERSION
            self.num_outputs = 1
            self.fields = dict(fields)
            self.phase = phase
            self.check_fields()

        def check_fields(self):
            pass

        def get_capability_interface(self, capability_type):
            return self

        def clone(self):
            return type(self)(self.fields, self.phase)

        def configure_plugin(self, inputs, outputs):
            pass

        def on_shape_change(self, inputs, outputs):
            pass

        def attach_to_context(self, context):
            return self.clone()

        def set_tactic(self, tactic):
            pass

    class BcDecodePlugin(_Plugin):
        op = "BcDecode"

        def check_fields(self):
            f = self.fields
            known = (f.get("format") in BC_FORMATS, f.get("layout") in BC_LAYOUTS, f.get("dtype") in BC_DTYPES)
            if not all(known):
                raise ValueError(f"ntc::BcDecode: bad fields {f}")
            self.code, self.channels, self.words = BC_FORMATS[f["format"]]

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
                                for k in PLUGIN_OPS[self.op]]
            return trt.PluginFieldCollection([trt.PluginField(k, a, trt.PluginFieldType.CHAR)
                                              for k, a in zip(PLUGIN_OPS[self.op], self._serialized)])

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            b, by, bx, _ = tuple(input_desc[0].dims)
            fn = _kernel("ntc_bc_decode_cuda", [ctypes.c_void_p] + [ctypes.c_int] * 6 + [ctypes.c_void_p] * 2)
            _check_status(self.op, fn(inputs[0], b, by, bx, self.code, BC_LAYOUTS[self.fields["layout"]],
                                      BC_DTYPES[self.fields["dtype"]], outputs[0], stream))

    class WindowAttentionPlugin(_Plugin):
        op = "WindowAttention"

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
                                              zip(("heads", "window", "shift", "scale"), self._serialized, kinds)])

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            bw, heads, _, head_dim = tuple(input_desc[0].dims)
            n_windows = tuple(input_desc[4].dims)[0]
            fn = _kernel("ntc_window_attention_cuda", [ctypes.c_void_p] * 5 + [ctypes.c_int] * 5
                         + [ctypes.c_float, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p])
            _check_status(self.op, fn(*inputs[:5], bw, n_windows, heads, int(self.fields["window"]), head_dim,
                                      float(self.fields["scale"]), dtype_codes[input_desc[0].type], outputs[0],
                                      stream))

    def _creator(plugin_cls, field_types):
        class Creator(trt.IPluginCreatorV3One):
            def __init__(self):
                trt.IPluginCreatorV3One.__init__(self)
                self.name, self.plugin_namespace, self.plugin_version = plugin_cls.op, NAMESPACE, VERSION
                self._empty = np.array([])
                self.field_names = trt.PluginFieldCollection(
                    [trt.PluginField(name, self._empty, kind) for name, kind in field_types])

            def create_plugin(self, name, fc, phase):
                return plugin_cls({f.name: _field_value(f) for f in fc}, phase)

        Creator.__name__ = f"{plugin_cls.op}Creator"
        return Creator

    char, i32, f32 = trt.PluginFieldType.CHAR, trt.PluginFieldType.INT32, trt.PluginFieldType.FLOAT32
    return (_creator(BcDecodePlugin, [(k, char) for k in PLUGIN_OPS["BcDecode"]]),
            _creator(WindowAttentionPlugin, [("heads", i32), ("window", i32), ("shift", i32), ("scale", f32)]))


# Registered creators per TensorRT module; kept referenced because the registry does not own Python objects.
_registered: dict[str, list] = {}


def register_creators(trt) -> list[str]:
    """Register the Python creators with trt's plugin registry under namespace ntc (idempotent); returns op names."""
    key = trt.__name__
    if key not in _registered:
        registry = trt.get_plugin_registry()
        creators = []
        for cls in make_plugin_classes(trt):
            creator = cls()
            if registry.get_creator(creator.name, VERSION, NAMESPACE) is None:
                if not registry.register_creator(creator, NAMESPACE):
                    raise NtcError(f"registering the {NAMESPACE}::{creator.name} Python plugin creator failed")
            creators.append(creator)
        _registered[key] = creators
    return [f"{NAMESPACE}::{c.name}" for c in _registered[key]]


def deregister_creators(trt) -> None:
    """Remove the Python creators (a C++ plugin library provides the same ops instead)."""
    registry = trt.get_plugin_registry()
    for creator in _registered.pop(trt.__name__, []):
        registry.deregister_creator(creator)
