"""Our registry models through the torch.export-based ONNX exporter (torch.export + onnxscript).

torch.export states dynamic sizes as Dims and linear expressions of one Dim. Every input of our models grows linearly
with the token grid's height or width: patch tokens [B, h, w, D], BC blocks [B, planes, h/4k, w/4k, W], indices
[B, C, h/2, w/2], ... So the grid is two Dims, `grid_h` and `grid_w`, counted in steps of the model's `grid_multiple`
(the granularity of its deployable inputs; token inputs take any grid), and each input axis that `dynamic_axes()`
declares is a linear expression of one of them (coefficients read off `example_inputs` at grids one step apart).
Tracing is size-oblivious (a size is assumed >= 2 without a guard), and the models write window padding and cropping
shape-generically, so one graph takes every grid from one step up: no narrowing.
"""

import ast
import json
import warnings

import onnx
import torch

from ...util.errors import NtcError
from .program import program_to_onnx
from .scopes import SCOPES_KEY, name_nodes_by_scope

BATCH = "batch"
_TRACE_SIDE = 24  # token-grid height traced (the width one step more: h and w stay two symbols)
_MAX_GRID = 4096  # largest token-grid side a dynamic Dim admits
_WRAPPED = "module"  # the wrapper's attribute holding the model (node scopes drop it)


def _shapes_at(module, steps: tuple[int, int], step: int) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in module.example_inputs(2, (steps[0] * step, steps[1] * step))]


def export_form(module: torch.nn.Module, step: int) -> tuple[tuple, tuple]:
    """(example args, dynamic_shapes) for `module`'s dynamic axes, the grid's height and width each a Dim counted in
    steps of `step`."""
    names = list(getattr(module, "input_names", ["tokens"]))
    if not hasattr(module, "example_inputs"):
        raise NtcError(f"{type(module).__name__} has no example_inputs() for torch.export; pass an example with "
                       "exporter='torchscript'")
    axes = module.dynamic_axes() if hasattr(module, "dynamic_axes") else {n: {0: BATCH} for n in names}
    grid_axes = any(label != BATCH for name in names for label in axes.get(name, {}).values())
    kh = -(-_TRACE_SIDE // step)
    if not grid_axes:  # batch-only: traced at the module's own example
        return tuple(module.example_inputs()), tuple(_batch_only(axes.get(n, {})) for n in names)
    base, taller, wider, tallest, widest = (_shapes_at(module, k, step) for k in (
        (kh, kh + 1), (kh + 1, kh + 1), (kh, kh + 2), (kh + 2, kh + 1), (kh, kh + 3)))
    dims = (torch.export.Dim("grid_h", min=1, max=_MAX_GRID // step),
            torch.export.Dim("grid_w", min=1, max=_MAX_GRID // step))
    shapes = []
    for i, name in enumerate(names):
        spec = {}
        for axis, label in axes.get(name, {}).items():
            if label == BATCH:
                spec[axis] = torch.export.Dim(BATCH, min=1, max=4096)
                continue
            d0, dh, dw = base[i][axis], taller[i][axis] - base[i][axis], wider[i][axis] - base[i][axis]
            linear = tallest[i][axis] - taller[i][axis] == dh and widest[i][axis] - wider[i][axis] == dw
            if (dh == 0) == (dw == 0) or not linear:
                raise NtcError(f"{getattr(module, 'arch', type(module).__name__)}: input {name!r} axis {axis} "
                               f"({label}) is declared dynamic but does not grow with the token grid's height or "
                               f"width alone in steps of {step} ({d0}, +{dh}, +{dw}); check its grid_multiple")
            a, k, dim = (dh, kh, dims[0]) if dh else (dw, kh + 1, dims[1])
            spec[axis] = a * dim + (d0 - a * k) if (a, d0 - a * k) != (1, 0) else dim
        shapes.append(spec or None)
    return tuple(module.example_inputs(2, (kh * step, (kh + 1) * step))), tuple(shapes)


def _batch_only(axes: dict) -> dict | None:
    return {axis: torch.export.Dim(BATCH, min=1, max=4096) for axis, label in axes.items() if label == BATCH} or None


def shape_key(module: torch.nn.Module, attention: str) -> str:
    """What decides the traced shapes' branches: the class, its configuration, its inputs and the attention
    lowering."""
    config = json.dumps(getattr(module, "config", None), sort_keys=True, default=str)
    shapes = [tuple(t.shape) for t in module.example_inputs()] if hasattr(module, "example_inputs") else []
    return (f"{type(module).__module__}.{type(module).__qualname__}|{getattr(module, 'arch', '')}|{config}|{shapes}|"
            f"{attention}")


def export_program(module: torch.nn.Module) -> torch.export.ExportedProgram:
    """torch.export of `module` with its dynamic axes: one program for every grid from one step up."""
    from torch.fx.experimental import _config as symbolic_config

    step = getattr(module, "grid_multiple", 1) or 1
    example, shapes = export_form(module, step)
    try:
        # size-oblivious: a one-window (or one-block) grid takes the same ops as any other, so no 0/1 guard is added
        with warnings.catch_warnings(), torch.no_grad(), symbolic_config.patch(backed_size_oblivious=True):
            warnings.simplefilter("ignore")
            return torch.export.export(module.eval(), example, dynamic_shapes=shapes, strict=False)
    except torch._dynamo.exc.UserError as e:  # a constraint violation: the model branches on its grid's size
        lines = str(e).strip().splitlines() or [""]
        why = next((line.strip() for line in lines if line.strip().startswith("- ")), lines[0])
        raise NtcError(f"torch.export of {type(module).__name__} failed: {why[:300]}") from None


def module_to_onnx(module: torch.nn.Module, opset: int) -> onnx.ModelProto:
    """fp32 ONNX of one of our registry models through torch.export (see the module docstring); I/O names and the
    dynamic axes' names as the module declares them."""
    program = export_program(module)
    model = program_to_onnx(program, list(module.input_names), list(module.output_names), opset)
    _drop_wrapper_scope(model)
    name_nodes_by_scope(model)
    _name_dynamic_axes(model, module.dynamic_axes())
    return model


def _drop_wrapper_scope(model: onnx.ModelProto) -> None:
    """Node scopes as if the model had been traced itself: the exporter records the wrapper's attribute ("module")
    as the outermost scope, which per-layer drift would not find among the model's own submodules."""
    for node in model.graph.node:
        for prop in node.metadata_props:
            if prop.key == SCOPES_KEY:
                scopes = ast.literal_eval(prop.value)
                if len(scopes) > 1 and scopes[1] == _WRAPPED:
                    scopes = scopes[:1] + [s.removeprefix(f"{_WRAPPED}.") for s in scopes[2:]]
                    prop.value = repr(scopes)


def _name_dynamic_axes(model: onnx.ModelProto, axes: dict) -> None:
    """The module's names for dynamic axes (the exporter names them after its symbols, e.g. "s48**2"); an undeclared
    axis with the same symbol as a declared one gets its name too (both sized by the same expression)."""
    values = (*model.graph.input, *model.graph.output)
    renamed = {}
    for value in values:
        for axis, label in axes.get(value.name, {}).items():
            dims = value.type.tensor_type.shape.dim
            if axis < len(dims) and not dims[axis].HasField("dim_value"):
                renamed.setdefault(dims[axis].dim_param, label)
                dims[axis].dim_param = label
    for value in values:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in renamed:
                dim.dim_param = renamed[dim.dim_param]


def shapes_vary_with_grid(model: onnx.ModelProto) -> bool:
    """Whether any input has a dynamic axis besides the batch."""
    return any(d.dim_param and d.dim_param != BATCH for v in model.graph.input
               for d in v.type.tensor_type.shape.dim)
