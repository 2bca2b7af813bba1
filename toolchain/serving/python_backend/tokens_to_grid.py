"""Host step of a compressor ensemble, after the decoder: its tokens of the grid padded to whole cells ([hp*wp, D]
per payload) cropped to the payload's own grid and laid out as the projectors take them ([h, w, D]); the grid comes
from the payload step.

The cropped tokens leave twice, as `tokens` (an ensemble output) and `projector_tokens` (the projector's input):
tritonserver 2.51 prunes the steps behind every ensemble output a request leaves out, even when a later step reads
that tensor, so one tensor serving both would leave a request for the embeddings alone with no steps to run
("unexpected deadlock")."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils
from ntc_export.serving.python_backend.tensors import from_numpy, to_numpy

OUTPUTS = ("tokens", "projector_tokens")


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.unit = int(config["parameters"]["unit"]["string_value"])  # the decoder's grid multiple

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
            grid = tokens.reshape(b, hp, wp, d)[:, :h, :w]
            # a copy each: every response tensor owns its buffer
            responses.append(pb_utils.InferenceResponse([from_numpy(pb_utils, o, np.array(grid)) for o in OUTPUTS]))
        return responses
