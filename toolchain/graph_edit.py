"""Small ONNX graph edits shared by the plugin passes: opset imports that follow the nodes."""

import onnx


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
