"""Checks on exported graphs shared by the reducer tests."""

import numpy as np
import onnx

REDUCING_SCATTERS = {"ScatterElements", "ScatterND"}


def op_types(model: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in model.graph.node}


def assert_no_dynamic_ops(model: onnx.ModelProto) -> None:
    """No NonZero (data-dependent shapes) and no scatter with a reduction (TensorRT has no such layer)."""
    assert "NonZero" not in op_types(model)
    for node in model.graph.node:
        if node.op_type in REDUCING_SCATTERS:
            reduction = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}.get("reduction", b"none")
            assert reduction in (b"none", "none"), f"{node.name}: {node.op_type} reduction={reduction}"


def output_dims(model: onnx.ModelProto) -> dict[str, list]:
    """Graph outputs' dims after strict ONNX shape inference (dim_param names or ints)."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    return {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in inferred.graph.output}


def input_dims(model: onnx.ModelProto) -> dict[str, list]:
    """Graph inputs' dims (dim_param names or ints)."""
    return {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}


def assert_grid_inputs(model: onnx.ModelProto, expected: dict[str, list]) -> None:
    """Each named input's dims are `expected` (the grid's axes named grid_h, grid_w: any grid in one graph)."""
    dims = input_dims(model)
    for name, shape in expected.items():
        assert dims[name] == list(shape), (name, dims[name])


def assert_static_outputs(model: onnx.ModelProto, expected: dict[str, list]) -> None:
    """Every output's shape is `expected` (ints), its first dim the symbolic batch."""
    dims = output_dims(model)
    for name, shape in expected.items():
        assert dims[name][0] == "batch", (name, dims[name])
        assert dims[name][1:] == list(shape), (name, dims[name])


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every value in the (shape-inferred) graph."""
    g = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.output, *g.value_info]}
    types.update({i.name: i.data_type for i in g.initializer})
    return types


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each pair of rows (last axis: the token's channels), in float64."""
    a, b = a.reshape(-1, a.shape[-1]).astype(np.float64), b.reshape(-1, b.shape[-1]).astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
