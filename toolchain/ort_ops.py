"""Registers the CPU implementations of our ntc:: custom ops with an ONNX Runtime session.

Each op module exposes `register(session_options)`; ops not yet available are skipped.
"""

import importlib

_OP_MODULES = ("ntc_export.bc.ort_op", "ntc_export.attention.ort_op")


def register_custom_ops(session_options) -> None:
    for name in _OP_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        mod.register(session_options)
