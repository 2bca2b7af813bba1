"""fp16 at the interface, fp32 inside: the fp16 artifact of graphs whose arithmetic must not round (token selections).

A reducer (ToMe, VisionZip) has no weights and almost no FLOPs; what it computes is a discrete selection (TopK/ArgMax
over similarity scores whose gaps are ~1e-6), which fp16 arithmetic flips without saving anything. Its fp16 graph takes
and returns float16 like every fp16 graph (what an fp16 pipeline passes between stages) and casts to float32 right
after the inputs and back right before the outputs.
"""

import onnx
from onnx import TensorProto, helper


def reroute_input(graph: onnx.GraphProto, name: str) -> str:
    """Every reader of graph input `name` reads `<name>__fp32` instead; the caller adds the node that makes it."""
    inner = f"{name}__fp32"
    for node in graph.node:
        node.input[:] = [inner if i == name else i for i in node.input]
    return inner


def reroute_output(graph: onnx.GraphProto, name: str) -> str:
    """The producer (and readers) of graph output `name` use `<name>__fp32` instead; the caller adds the node that
    makes the output from it."""
    inner = f"{name}__fp32"
    for node in graph.node:
        node.output[:] = [inner if o == name else o for o in node.output]
        node.input[:] = [inner if i == name else i for i in node.input]
    return inner


def fp16_interface(fp32: onnx.ModelProto, keep=frozenset()) -> onnx.ModelProto:
    """A copy of the fp32 graph whose float inputs and outputs are float16, cast to/from float32 at the edges
    (those named in `keep` stay float32: the int8 interface's token streams, int8_io.py)."""
    model = onnx.ModelProto.FromString(fp32.SerializeToString())
    graph = model.graph
    head, tail = [], []
    for value in graph.input:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT and value.name not in keep:
            inner = reroute_input(graph, value.name)
            head.append(helper.make_node("Cast", [value.name], [inner], to=TensorProto.FLOAT, name=f"{inner}_cast"))
            value.type.tensor_type.elem_type = TensorProto.FLOAT16
    for value in graph.output:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT and value.name not in keep:
            inner = reroute_output(graph, value.name)
            tail.append(helper.make_node("Cast", [inner], [value.name], to=TensorProto.FLOAT16,
                                         name=f"{value.name}_cast"))
            value.type.tensor_type.elem_type = TensorProto.FLOAT16
    # The graph's float initializers are constants of the selection (ranges, levels), not weights: as Constant nodes
    # they stay fp32 and the file reads as what it is at its interface, an fp16 graph (backend/onnx/inspect.py).
    floats = [i for i in graph.initializer if i.data_type == TensorProto.FLOAT]
    head = [helper.make_node("Constant", [], [i.name], value=i, name=f"{i.name}_constant") for i in floats] + head
    kept = [i for i in graph.initializer if i.data_type != TensorProto.FLOAT]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = [*head, *graph.node, *tail]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)
