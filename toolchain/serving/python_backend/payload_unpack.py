"""Host step of a compressor ensemble: payload bytes (UINT8 [L]) -> the BC blocks its decoder engine takes (INT32
[planes, by, bx, W], the grid padded to whole blocks) and the payload's token grid (INT32 [2]: h, w, for the crop
after the decoder). The payload header is checked (format, compressor family, model fingerprint); the bc_autoencoder
family stores raw BC blocks, so unpacking is a header check and a reinterpretation of the body."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils
from ntc_export.codec.payload import expect, unpack
from ntc_export.serving.python_backend.tensors import from_numpy, to_numpy
from ntc_export.util.errors import NtcError


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config["parameters"].items()}
        self.family, self.fingerprint = params["family"], bytes.fromhex(params["fingerprint"])
        self.planes, self.words, self.unit = int(params["planes"]), int(params["words"]), int(params["unit"])

    def blocks(self, data: bytes, what: str) -> tuple[np.ndarray, tuple[int, int]]:
        payload = expect(unpack(data, what), self.family, self.fingerprint, what)
        h, w = payload.grid
        shape = (self.planes, -(-h // self.unit), -(-w // self.unit), self.words)  # padded to whole blocks
        if len(payload.body) != 4 * int(np.prod(shape)):
            raise NtcError(f"{what}: {len(payload.body)} body bytes, grid {h}x{w} needs {4 * int(np.prod(shape))}")
        return np.frombuffer(payload.body, "<i4").reshape(shape).astype(np.int32), (h, w)

    def execute(self, requests):
        responses = []
        for r in requests:
            data = to_numpy(pb_utils.get_input_tensor_by_name(r, "payload"))
            try:
                blocks, grids = zip(*(self.blocks(row.tobytes(), f"payload {i}") for i, row in enumerate(data)))
                if len(set(grids)) > 1:
                    raise NtcError(f"payloads of token grids {sorted(set(grids))} in one request: one grid per request")
                responses.append(pb_utils.InferenceResponse([from_numpy(pb_utils, "blocks", np.stack(blocks)),
                                                             from_numpy(pb_utils, "grid", np.array(grids, np.int32))]))
            except NtcError as e:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e))))
        return responses
