"""Our registry models through the torch.export-based ONNX exporter (torch.export + onnxscript).

torch.export states dynamic sizes as Dims and linear expressions of one Dim. Our models' inputs grow with the token
grid's side s (BC blocks s/4 per side, latents s/2, ...: linear in s), except patch tokens [B, N, D] themselves, whose
N = s*s is not linear. So:
- the grid side is one Dim `grid` counted in steps of the model's `grid_multiple` (s = step * grid), and each input axis
  that `dynamic_axes()` declares is a linear expression of it (coefficients read off `example_inputs` at three grids),
  or the batch Dim;
- a token input is traced as [B, s, s, D] through a wrapper that flattens it before the model, and afterwards the ONNX
  graph gets its [B, N, D] input back, with s = Sqrt(N) computed in the graph as the TorchScript export computed it.
"""

import ast
import json
import warnings

import onnx
import torch
from onnx import TensorProto, helper

from ...models.base import traced_grid
from ...ops.window_attention.lowering import active_mode
from ...util.errors import NtcError
from .program import program_to_onnx
from .scopes import SCOPES_KEY, name_nodes_by_scope

BATCH = "batch"
_TRACE_SIDE = 32  # token-grid side traced (and the first of three sampled to read each axis's coefficients)
_MAX_GRID = 4096  # largest token-grid side a dynamic Dim admits
_STEP_DOUBLINGS = 3
MIN_SIDE = 16  # the smallest grid side a narrowed export keeps (the default engine profiles' minimum)
GRID_KEY = "ntc.export.token_grid"  # metadata: which token-grid sides the exported graph takes


_WRAPPED = "module"  # the wrapper's attribute holding the model


class _GridTokens(torch.nn.Module):
    """Feeds `module` token inputs given as [B, s, s, D] (flattened to [B, s*s, D]); other inputs pass through."""

    def __init__(self, module: torch.nn.Module, square: set[int]):
        super().__init__()
        setattr(self, _WRAPPED, module)
        self.square = square

    def forward(self, *inputs):
        first = inputs[min(self.square)]
        flat = [x.flatten(1, 2) if i in self.square else x for i, x in enumerate(inputs)]
        with traced_grid(first.shape[1], first.shape[2]):
            return self.module(*flat)


def _shapes_at(module, batch: int, steps: int, step: int) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in module.example_inputs(batch, steps * step)]


def export_form(module: torch.nn.Module, step: int, min_side: int
                ) -> tuple[torch.nn.Module, tuple, tuple, set[int]]:
    """(module to trace, example args, dynamic_shapes, indices of square token inputs) for `module`'s dynamic axes,
    the token-grid side counted in steps of `step`, from `min_side` up."""
    names = list(getattr(module, "input_names", ["tokens"]))
    if not hasattr(module, "example_inputs"):
        raise NtcError(f"{type(module).__name__} has no example_inputs() for torch.export; pass an example with "
                       "exporter='torchscript'")
    axes = module.dynamic_axes() if hasattr(module, "dynamic_axes") else {n: {0: BATCH} for n in names}
    grid_axes = any(label != BATCH for name in names for label in axes.get(name, {}).values())
    k0 = -(-_TRACE_SIDE // step)  # traced at a side >= _TRACE_SIDE: several attention windows, no size-1 axes
    if not grid_axes:  # batch-only: traced at the module's own example
        example, base = list(module.example_inputs()), None
    else:
        base, taller, third = (_shapes_at(module, 2, k, step) for k in (k0, k0 + 1, k0 + 2))
        example = list(module.example_inputs(2, k0 * step))
    grid = torch.export.Dim("grid", min=max(1, -(-min_side // step)), max=_MAX_GRID // step)
    batch = torch.export.Dim(BATCH, min=1, max=4096)
    square, shapes = set(), []
    for i, name in enumerate(names):
        dims = {}
        for axis, label in axes.get(name, {}).items():
            if label == BATCH:
                dims[axis] = batch
                continue
            d0, d1, d2 = base[i][axis], taller[i][axis], third[i][axis]
            if d1 == d0 or d2 - d1 != d1 - d0 and not _is_square(base, taller, i, axis, k0, step):
                raise NtcError(f"{getattr(module, 'arch', type(module).__name__)}: input {name!r} axis {axis} "
                               f"({label}) is declared dynamic but does not grow with the token grid in steps of "
                               f"{step} ({d0}, {d1}, {d2}); its grid_multiple is too small")
            if d2 - d1 == d1 - d0:  # linear in the grid side: a * grid + b
                a, b = d1 - d0, d0 - (d1 - d0) * k0
                dims[axis] = a * grid + b if (a, b) != (1, 0) else grid
            else:
                square.add(i)  # patch tokens [B, N, D], N = s*s: traced as [B, s, s, D]
                side = k0 * step
                example[i] = example[i].reshape(example[i].shape[0], side, side, example[i].shape[2])
                dims[1] = dims[2] = step * grid if step > 1 else grid
        shapes.append(dims or None)
    if square:  # the wrapper takes *inputs: one dynamic_shapes entry for the whole tuple
        return _GridTokens(module, square), tuple(example), (tuple(shapes),), square
    return module, tuple(example), tuple(shapes), square


def _is_square(base, taller, i: int, axis: int, k0: int, step: int) -> bool:
    """Input i is patch tokens [B, N, D] with N = side^2 at both sampled sides."""
    return len(base[i]) == 3 and axis == 1 and all(s[i][1] == (k * step) ** 2 for s, k in ((base, k0),
                                                                                          (taller, k0 + 1)))


_NARROWED: dict[str, tuple[int, int]] = {}  # shape key -> the (step, smallest side) torch.export accepted


def shape_key(module: torch.nn.Module, attention: str) -> str:
    """What decides the traced shapes' branches: the class, its configuration, its inputs and the attention
    lowering."""
    config = json.dumps(getattr(module, "config", None), sort_keys=True, default=str)
    shapes = [tuple(t.shape) for t in module.example_inputs()] if hasattr(module, "example_inputs") else []
    return (f"{type(module).__module__}.{type(module).__qualname__}|{getattr(module, 'arch', '')}|{config}|{shapes}|"
            f"{attention}")


def export_program(module: torch.nn.Module) -> tuple[torch.export.ExportedProgram, set[int], int, int]:
    """torch.export of `module` with its dynamic axes: (program, square token inputs, grid step, smallest side).

    torch.export keeps a size generic only where every value in its range takes the traced branch: grids of a
    single attention window, or padded to one, specialise. So the grid starts generic (the model's `grid_multiple`
    from two steps up) and narrows until torch.export accepts it: sides from MIN_SIDE, then coarser steps."""
    multiple = getattr(module, "grid_multiple", 1) or 1
    attempts = [(multiple, 2 * multiple)] + [(multiple * 2**i, MIN_SIDE) for i in range(_STEP_DOUBLINGS + 1)]
    attempts = list(dict.fromkeys(attempts))  # (step, smallest side) pairs, each tried once
    key = shape_key(module, active_mode())
    if key in _NARROWED:  # the same architecture and configuration narrowed before: start there
        attempts = attempts[attempts.index(_NARROWED[key]):]
    for n, (step, min_side) in enumerate(attempts):
        traced, example, shapes, square = export_form(module, step, min_side)
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                program = torch.export.export(traced.eval(), example, dynamic_shapes=shapes, strict=False)
            _NARROWED[key] = (step, min_side)
            return program, square, step, max(min_side, step)
        except torch._dynamo.exc.UserError as e:  # constraint violations: the grid cannot stay this generic
            if n == len(attempts) - 1 or "grid" not in str(e):
                raise NtcError(f"torch.export of {type(module).__name__} failed: "
                               f"{(str(e).strip().splitlines() or [''])[0][:300]}") from None
    raise AssertionError("unreachable")


def module_to_onnx(module: torch.nn.Module, opset: int) -> onnx.ModelProto:
    """fp32 ONNX of one of our registry models through torch.export (see the module docstring); I/O names and the
    dynamic axes' names as the module declares them; metadata GRID_KEY says which grid sides it takes."""
    program, square, step, min_side = export_program(module)
    names = list(module.input_names)
    model = program_to_onnx(program, names, list(module.output_names), opset)
    for i in sorted(square):
        _tokens_from_flat(model, names[i])
    if square:
        _drop_wrapper_scope(model)
    name_nodes_by_scope(model)
    _name_dynamic_axes(model, module.dynamic_axes())
    if shapes_vary_with_grid(model):
        onnx.helper.set_model_props(model, {GRID_KEY: f"sides {min_side}, {min_side + step}, ... (step {step})"})
    return model


def _tokens_from_flat(model: onnx.ModelProto, name: str) -> None:
    """Input `name` traced as [B, s, s, D] becomes [B, N, D] again: s = Sqrt(N) (exact for square N < 2**24), then
    Reshape to what the graph read."""
    graph = model.graph
    old = next(v for v in graph.input if v.name == name)
    dims = old.type.tensor_type.shape.dim
    grid_value = f"{name}_grid"
    for node in graph.node:
        for k, value in enumerate(node.input):
            if value == name:
                node.input[k] = grid_value
    p = f"{name}_to_grid"
    const = lambda n, v: helper.make_node("Constant", [], [f"{p}/{n}"],  # noqa: E731
                                          value=helper.make_tensor(f"{p}/{n}", TensorProto.INT64, [len(v)], v))
    nodes = [
        const("c0", [0]), const("c1", [1]), const("c2", [2]), const("c3", [3]),
        helper.make_node("Shape", [name], [f"{p}/shape"]),
        helper.make_node("Slice", [f"{p}/shape", f"{p}/c0", f"{p}/c1"], [f"{p}/b"]),
        helper.make_node("Slice", [f"{p}/shape", f"{p}/c1", f"{p}/c2"], [f"{p}/n"]),
        helper.make_node("Slice", [f"{p}/shape", f"{p}/c2", f"{p}/c3"], [f"{p}/d"]),
        helper.make_node("Cast", [f"{p}/n"], [f"{p}/n_float"], to=TensorProto.FLOAT),
        helper.make_node("Sqrt", [f"{p}/n_float"], [f"{p}/side_float"]),
        helper.make_node("Cast", [f"{p}/side_float"], [f"{p}/side"], to=TensorProto.INT64),
        helper.make_node("Concat", [f"{p}/b", f"{p}/side", f"{p}/side", f"{p}/d"], [f"{p}/grid_shape"], axis=0),
        helper.make_node("Reshape", [name, f"{p}/grid_shape"], [grid_value]),
    ]
    for node in nodes:
        node.name = node.output[0]
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    flat = helper.make_tensor_value_info(name, old.type.tensor_type.elem_type,
                                         [dims[0].dim_param or dims[0].dim_value, "tokens", dims[3].dim_value])
    inputs = [flat if v.name == name else v for v in graph.input]
    del graph.input[:]
    graph.input.extend(inputs)


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
