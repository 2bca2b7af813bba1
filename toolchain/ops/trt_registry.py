"""Registration of every ntc op's Python IPluginV3 creator with a TensorRT module's plugin registry."""

from ..util.errors import NtcError
from .bc_decode import trt_plugin as bc_decode_plugin
from .domain import DOMAIN, VERSION
from .trt_plugin_base import base_plugin_class, creator_class
from .window_attention import trt_plugin as window_attention_plugin

PLUGIN_MODULES = (bc_decode_plugin, window_attention_plugin)  # each: plugin_class(trt, base), field_types(trt)


def make_plugin_classes(trt):
    """One creator class per ntc op, bound to one TensorRT module (tensorrt or tensorrt_rtx)."""
    base = base_plugin_class(trt)
    return tuple(creator_class(trt, op.plugin_class(trt, base), op.field_types(trt)) for op in PLUGIN_MODULES)


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
            if registry.get_creator(creator.name, VERSION, DOMAIN) is None:
                if not registry.register_creator(creator, DOMAIN):
                    raise NtcError(f"registering the {DOMAIN}::{creator.name} Python plugin creator failed")
            creators.append(creator)
        _registered[key] = creators
    return [f"{DOMAIN}::{c.name}" for c in _registered[key]]


def deregister_creators(trt) -> None:
    """Remove the Python creators (a C++ plugin library provides the same ops instead)."""
    registry = trt.get_plugin_registry()
    for creator in _registered.pop(trt.__name__, []):
        registry.deregister_creator(creator)
