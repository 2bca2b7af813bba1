"""The plumbing every ntc op's Python IPluginV3 plugin shares (TensorRT-RTX or TensorRT): the base plugin class, the
creator class, field decoding, and ctypes access to the CUDA kernels (used only at run time: AOT builds never
enqueue)."""

import ctypes

import numpy as np

from .domain import DOMAIN, VERSION


def field_value(field):
    """A plugin field's value as str / int / float (the parser passes strings as CHAR arrays)."""
    data = np.asarray(field.data)
    if data.dtype in (np.int8, np.uint8) and str(field.type).endswith("CHAR"):
        return data.tobytes().split(b"\0", 1)[0].decode()
    flat = data.ravel()
    if flat.size == 0:
        return None
    return float(flat[0]) if np.issubdtype(flat.dtype, np.floating) else int(flat[0])


def kernel(name: str, argtypes):
    """A C ABI function of libntc_kernels.so with its argument types (loaded on first use)."""
    from ..native.kernels import kernels_library

    fn = getattr(kernels_library(), name)
    fn.argtypes, fn.restype = argtypes, ctypes.c_int
    return fn


def check_status(op: str, status: int) -> None:
    if status != 0:
        raise RuntimeError(f"{DOMAIN}::{op} kernel returned {status}")


def base_plugin_class(trt):
    """The IPluginV3 base every ntc plugin class derives from, bound to one TensorRT module."""

    class Plugin(trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime):
        op = ""

        def __init__(self, fields: dict, phase=None):
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            self.plugin_name, self.plugin_namespace, self.plugin_version = self.op, DOMAIN, VERSION
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

    return Plugin


def creator_class(trt, plugin_cls, field_types):
    class Creator(trt.IPluginCreatorV3One):
        def __init__(self):
            trt.IPluginCreatorV3One.__init__(self)
            self.name, self.plugin_namespace, self.plugin_version = plugin_cls.op, DOMAIN, VERSION
            self._empty = np.array([])
            self.field_names = trt.PluginFieldCollection(
                [trt.PluginField(name, self._empty, kind) for name, kind in field_types])

        def create_plugin(self, name, fc, phase):
            return plugin_cls({f.name: field_value(f) for f in fc}, phase)

    Creator.__name__ = f"{plugin_cls.op}Creator"
    return Creator
