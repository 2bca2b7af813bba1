"""Module scopes of ONNX nodes: the legacy exporter names nodes after them ("/mlp/mlp.0/MatMul"), the torch.export-based
one records them as node metadata; `name_nodes_by_scope` gives the latter's nodes the former's names, so reports,
layer lists and per-layer drift read the same either way."""

import ast

import onnx

SCOPES_KEY = "pkg.torch.onnx.name_scopes"  # node metadata where the torch.export-based exporter records scopes

def scope_prefix(module_name: str) -> str:
    """ONNX node-name prefix of a module path: "a.b" -> "/a/a.b/"."""
    parts = module_name.split(".")
    return "/" + "/".join(".".join(parts[:i + 1]) for i in range(len(parts))) + "/"


def module_path(node: onnx.NodeProto) -> list[str]:
    """The module path the torch.export-based exporter records on a node (its metadata "name_scopes" without the
    root and the op's own name), or [] for nodes of the legacy exporter."""
    raw = next((p.value for p in node.metadata_props if p.key == SCOPES_KEY), None)
    try:
        scopes = ast.literal_eval(raw)[1:-1] if raw else []
    except (ValueError, SyntaxError):
        return []
    path: list[str] = []
    for scope in scopes:  # entries are relative ("mlp", "0") or, for nested calls, the full path ("blocks.0.attn")
        parts = scope.split(".")  # a submodule called from an ancestor's forward is one dotted entry too
        path = parts if len(parts) > len(path) and parts[:len(path)] == path else path + parts
    return path


def name_nodes_by_scope(model: onnx.ModelProto) -> None:
    """Nodes with a recorded module path are renamed "/a/a.b/OpType" (then "_1", "_2", ... when taken)."""
    used = {n.name for n in model.graph.node if not module_path(n)}
    for node in model.graph.node:
        path = module_path(node)
        if not path:
            continue
        base = scope_prefix(".".join(path)) + node.op_type
        name, k = base, 0
        while name in used:
            k += 1
            name = f"{base}_{k}"
        node.name = name
        used.add(name)
