"""The fp16 pass keeps every tensor's declared type: a module's own `.float()` (a Cast to FLOAT before an fp32-island
op) becomes a float16 Cast where the converter typed its output float16, and the graph runs in ONNX Runtime."""

import numpy as np
import onnx
import torch
from ntc_export.backend.onnx.export import to_fp16, to_onnx_fp32
from ntc_export.backend.onnxrt.runner import OrtRunner


class SoftmaxInFloat(torch.nn.Module):
    input_names = ["tokens"]
    output_names = ["tokens_out"]

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = torch.nn.Linear(8, 16), torch.nn.Linear(16, 8)

    def forward(self, tokens):
        return self.b(torch.softmax(self.a(tokens).float(), -1))  # the usual "softmax in fp32" idiom

    def example_inputs(self):
        return (torch.randn(2, 4, 8),)

    def dynamic_axes(self):
        return {"tokens": {0: "batch"}, "tokens_out": {0: "batch"}}


def test_module_float_casts_follow_the_fp16_types(tmp_path):
    module = SoftmaxInFloat().eval()
    fp16 = to_fp16(to_onnx_fp32(module))
    types = {v.name: v.type.tensor_type.elem_type for v in fp16.graph.value_info}
    for node in fp16.graph.node:
        if node.op_type == "Cast" and node.output[0] in types:
            to = next(a.i for a in node.attribute if a.name == "to")
            assert to == types[node.output[0]], (node.name, to, types[node.output[0]])
    onnx.save(fp16, tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal((3, 4, 8)).astype(np.float32)
    got = OrtRunner(tmp_path / "m.onnx").run({"tokens": x.astype(np.float16)})["tokens_out"].astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    cos = float((got * ref).sum() / np.linalg.norm(got) / np.linalg.norm(ref))
    assert cos >= 0.9995, cos
