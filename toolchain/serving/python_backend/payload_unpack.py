"""Host step of a compressor ensemble: payload bytes (UINT8 [L] per image; rows of one request zero-padded to the
longest) -> the inputs its decoder graph takes (BC blocks, VQ indices, int4 or BC latent textures, or the
hyperprior's range-decoded latents; the grid padded to the decoder's multiple) and the payloads' token grid (INT32
[2]: h, w, for the crop after the decoder). Every payload header is checked (format, compressor family, model
fingerprint); the work is unpacking.Unpacker's, its parameters this model's config parameters. A bad payload gets
an error response with the one-line reason; the server goes on."""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils
from ntc_export.serving.python_backend.tensors import from_numpy, to_numpy
from ntc_export.serving.python_backend.unpacking import Unpacker
from ntc_export.util.errors import NtcError


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config["parameters"].items()}
        self.unpack = Unpacker(params, os.path.join(args["model_repository"], args["model_version"]))
        # the decoder's own input types (an fp16 graph takes fp16 latents)
        self.dtypes = {t["name"]: pb_utils.triton_string_to_numpy(t["data_type"]) for t in config["output"]}

    def _response(self, request):
        data = to_numpy(pb_utils.get_input_tensor_by_name(request, "payload"))
        inputs, grid = self.unpack(data)
        grids = np.array([grid] * len(data), np.int32)
        return pb_utils.InferenceResponse([from_numpy(pb_utils, n, a.astype(self.dtypes[n])) for n, a in inputs.items()]
                                          + [from_numpy(pb_utils, "grid", grids)])

    def execute(self, requests):
        responses = []
        for r in requests:
            try:
                responses.append(self._response(r))
            except NtcError as e:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e))))
            except Exception as e:  # a decoder library's own error on a corrupt stream: still one line, server goes on
                first = (str(e).strip().splitlines() or [""])[0][:300]
                error = f"payload step: {type(e).__name__}: {first}"
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(error)))
        return responses
