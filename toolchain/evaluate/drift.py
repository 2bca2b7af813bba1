"""Per-layer drift: cosine of each named module's output in PyTorch against the matching ONNX intermediate tensor.

The legacy TorchScript exporter names nodes after module scopes ("/mlp/mlp.0/MatMul" belongs to module "mlp.0"), and
the torch.export-based one records the scopes as node metadata (name_scopes ['', 'mlp', '0', 'linear']), so a
module's ONNX output is the last tensor its scope produces for a consumer outside the scope. Q/DQ and Cast-free
matching: QuantizeLinear/DequantizeLinear nodes never belong to a scope (the module's float result is compared);
Cast nodes that an fp16 pass put inside a scope do, so an fp16 module is compared at the type its consumers see.
"""

import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

from ..backend.onnx.scopes import module_path, scope_prefix
from ..util.errors import NtcError
from .fidelity import fidelity

DEFAULT_THRESHOLD = 0.999
SAMPLES = 4
_NOT_IN_SCOPE = {"QuantizeLinear", "DequantizeLinear", "Constant"}


def drift_threshold(precision: str) -> float:
    """The per-layer cosine bound for a precision: the output threshold where it is a cosine, else 0.99999."""
    from .validate import THRESHOLDS

    metric, _, bound = THRESHOLDS.get(precision, ("cosine", ">=", DEFAULT_THRESHOLD))
    return float(bound) if metric == "cosine" else 0.99999


def scope_outputs(model: onnx.ModelProto, module_names: list[str]) -> dict[str, str]:
    """module name -> the ONNX tensor that carries its output (absent when the graph has no such scope)."""
    graph = model.graph
    consumers: dict[str, set[int]] = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            consumers.setdefault(name, set()).add(i)
    graph_outputs = {o.name for o in graph.output}
    scopes = [module_path(n) for n in graph.node]
    found = {}
    for module in module_names:
        prefix, parts = scope_prefix(module), module.split(".")
        inside = {i for i, n in enumerate(graph.node) if n.op_type not in _NOT_IN_SCOPE
                  and (n.name.startswith(prefix) or scopes[i][:len(parts)] == parts)}
        best = None
        for i in sorted(inside):
            for out in graph.node[i].output:
                if out and (out in graph_outputs or consumers.get(out, set()) - inside):
                    best = out  # the last one in topological order is the module's result
        if best is not None:
            found[module] = best
    return found


def torch_module_outputs(module: torch.nn.Module, feeds: dict[str, np.ndarray]) -> list[tuple[str, str, np.ndarray]]:
    """(module name, class name, output) for every named submodule, in the order their forward calls finish."""
    seen: list[tuple[str, str, np.ndarray]] = []
    hooks = []

    def hook(name):
        def fn(mod, args, out):
            out = out[0] if isinstance(out, (tuple, list)) else out
            if isinstance(out, torch.Tensor) and out.is_floating_point():
                seen.append((name, type(mod).__name__, out.detach().float().numpy().copy()))
        return fn

    for name, sub in module.named_modules():
        if name:
            hooks.append(sub.register_forward_hook(hook(name)))
    names = list(getattr(module, "input_names", ["tokens"]))
    try:
        with torch.inference_mode():
            module.eval()(*[torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names])
    finally:
        for h in hooks:
            h.remove()
    return seen


def with_outputs(model: onnx.ModelProto, tensors: list[str]) -> onnx.ModelProto:
    """A copy of `model` that also returns `tensors` as graph outputs."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    existing = {o.name for o in model.graph.output}
    for name in tensors:
        if name not in existing:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
            existing.add(name)
    return model


def layer_drift(module: torch.nn.Module, onnx_path, feeds: dict[str, np.ndarray], threshold: float = DEFAULT_THRESHOLD,
                samples: int = SAMPLES) -> list[dict]:
    """Per-layer cosine of the ONNX model's intermediate tensors against PyTorch on the first `samples` samples.

    Rows in execution order: {layer, module_type, onnx_tensor, cosine, rel_l2, max_abs, below, first_below}; the first
    layer whose cosine is under `threshold` has first_below True (where drift enters)."""
    from ..backend.onnx.inspect import has_custom_ops
    from ..backend.onnxrt.runner import OrtRunner

    path = Path(onnx_path)
    if not path.is_file():
        raise NtcError(f"{path}: no such ONNX file for the drift analysis")
    if not 0.0 < threshold <= 1.0:
        raise NtcError(f"drift threshold {threshold} is outside (0, 1]")
    feeds = {k: np.asarray(v)[:samples] for k, v in feeds.items()}
    golden = torch_module_outputs(module, feeds)
    if not golden:  # no submodule runs in the forward (a linear synthesis of parameters): no layers to compare
        return []
    model = onnx.load(str(path))
    mapping = scope_outputs(model, [name for name, _, _ in golden])
    if not mapping:
        raise NtcError(f"{path.name}: no node is named after a module scope of {type(module).__name__}; "
                       "was it exported with the legacy exporter?")
    with tempfile.TemporaryDirectory(prefix="ntc-drift-") as tmp:
        probe = Path(tmp) / path.name
        onnx.save_model(with_outputs(model, sorted(set(mapping.values()))), str(probe))
        runner = OrtRunner(probe, custom_ops=has_custom_ops(path))
        got = runner.run({n: feeds[n] for n in runner.input_names})
    rows, used = [], set()
    for name, kind, ref in golden:
        tensor = mapping.get(name)
        if tensor is None or tensor in used:
            continue  # a container whose result is its last child's tensor is reported once, at the child
        used.add(tensor)
        out = np.asarray(got[tensor])
        row = {"layer": name, "module_type": kind, "onnx_tensor": tensor, "shape": list(ref.shape)}
        if out.size != ref.size:
            row.update(cosine=None, rel_l2=None, max_abs=None, below=False,
                       note=f"ONNX tensor has shape {list(out.shape)}, PyTorch {list(ref.shape)}")
        else:
            f = fidelity(ref, out.astype(np.float64).reshape(ref.shape))
            row.update(cosine=f["cosine"], rel_l2=f["rel_l2"], max_abs=f["max_abs"], below=f["cosine"] < threshold)
        rows.append(row)
    first = next((r for r in rows if r["below"]), None)
    for r in rows:
        r["first_below"] = r is first
        r["threshold"] = threshold
    return rows
