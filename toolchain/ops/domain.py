"""Where our ops live in ONNX: the `ntc` domain (= TensorRT plugin namespace), the op version, the standard domains,
and the opset-import edits every plugin pass shares."""

import onnx

DOMAIN = "ntc"  # ONNX node domain of every ntc op, and the TensorRT plugin namespace
VERSION = "1"  # plugin_version of every ntc op (ONNX attribute, TensorRT creator version)
STANDARD_DOMAINS = ("", "ai.onnx")  # both spell the default ONNX operator set


def standard_opset(model: onnx.ModelProto) -> int:
    """The model's default-domain opset version (0 when it imports none)."""
    return next((o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS), 0)


def import_domain(model: onnx.ModelProto, domain: str, version: int = 1) -> None:
    """Declare `domain` in the model's opset imports if it is not there yet."""
    if not any(o.domain == domain for o in model.opset_import):
        model.opset_import.add(domain=domain, version=version)


def drop_unused_domain(model: onnx.ModelProto, domain: str) -> None:
    """Remove the opset import of `domain` once no node uses it (a pass replaced them all)."""
    if not any(n.domain == domain for n in model.graph.node):
        keep = [o for o in model.opset_import if o.domain != domain]
        del model.opset_import[:]
        model.opset_import.extend(keep)


def extensions_domain() -> str:
    """The domain onnxruntime-extensions serves Python custom ops from ("ai.onnx.contrib")."""
    from onnxruntime_extensions import default_opset_domain

    return default_opset_domain()
