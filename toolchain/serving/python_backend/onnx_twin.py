"""CPU twin of a TensorRT plan model: the ONNX the plan was built from, run by ONNX Runtime with the ntc:: CPU custom
ops, behind the same inputs, outputs and dynamic batching (selected with --model-config-name=cpu)."""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils
from ntc_export.backend.onnxrt.runner import OrtRunner
from ntc_export.serving.python_backend.tensors import from_numpy, to_numpy


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        folder = os.path.join(args["model_repository"], args["model_version"])
        self.runner = OrtRunner(os.path.join(folder, "model.onnx"), providers=["CPUExecutionProvider"],
                                float_io=False)  # the plan's own tensor types, int8 interfaces included
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]

    def _run(self, feeds: list[dict]) -> list[dict]:
        """One ORT run over the requests of a batch (same non-batch shapes: the dynamic batcher groups only those)."""
        sizes = [len(f[self.inputs[0]]) for f in feeds]
        outs = self.runner.run({n: np.concatenate([f[n] for f in feeds]) for n in self.inputs})
        bounds = np.cumsum([0, *sizes])
        return [{n: outs[n][a:b] for n in self.outputs} for a, b in zip(bounds[:-1], bounds[1:])]

    def execute(self, requests):
        feeds = [{n: to_numpy(pb_utils.get_input_tensor_by_name(r, n)) for n in self.inputs} for r in requests]
        try:
            results = self._run(feeds)
        except Exception as e:  # ORT's own error types: one error response per request, the server goes on
            error = pb_utils.TritonError(f"ONNX Runtime: {str(e).strip().splitlines()[0][:300]}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        return [pb_utils.InferenceResponse([from_numpy(pb_utils, n, r[n]) for n in self.outputs]) for r in results]
