"""Host step of a compressor ensemble, after the decoder: its tokens of the grid padded to whole blocks ([hp*wp, D]
per payload) cropped to the payload's own grid and laid out as the projectors take them ([h, w, D]); the grid comes
from the payload step."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils
from ntc_export.serving.python_backend.tensors import from_numpy, to_numpy


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.unit = int(config["parameters"]["unit"]["string_value"])  # the decoder's block multiple

    def execute(self, requests):
        responses = []
        for r in requests:
            tokens = to_numpy(pb_utils.get_input_tensor_by_name(r, "padded_tokens"))
            grids = to_numpy(pb_utils.get_input_tensor_by_name(r, "grid"))
            (h, w), (b, n, d) = (int(v) for v in grids[0]), tokens.shape
            hp, wp = -(-h // self.unit) * self.unit, -(-w // self.unit) * self.unit
            if (grids != grids[0]).any() or hp * wp != n:  # the payload step refuses mixed grids before this
                error = f"decoder tokens [{b}, {n}, {d}] do not cover a {h}x{w} grid padded to {hp}x{wp}"
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(error)))
                continue
            grid = np.ascontiguousarray(tokens.reshape(b, hp, wp, d)[:, :h, :w])
            responses.append(pb_utils.InferenceResponse([from_numpy(pb_utils, "tokens", grid)]))
        return responses
