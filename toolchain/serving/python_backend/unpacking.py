"""Payload bytes -> a compressor decoder's input tensors: the work of an ensemble's payload step, without Triton (the
step's model.py wraps it; tests call it directly).

An `Unpacker` is built from the step's parameters, which serving.payload_layout writes from the checkpoint:
family and fingerprint (checked in every payload header), `unit` (the decoder's grid multiple: payloads hold the
image's grid padded to it), `inputs` (JSON: [name, channels, tokens per cell side, words per block or 0] per decoder
input, in the order the body stores them) and `body`, how the body stores those values:
  int32        little-endian INT32 words (bc_autoencoder's BC blocks, ntc_grid's BC4/BC5 blocks),
  nibbles      4-bit codes, two per byte (ntc_grid int4: models.ntc_grid.unpack_nibbles),
  bits:B       B-bit indices, MSB first, below `levels` (vq: models.vq.unpack_indices),
  range_coded  the hyperprior's range-coded z and y streams (see `RangeDecoder`).
"""

import json
from pathlib import Path

import numpy as np
from ntc_export.codec.payload import expect_all, payload_length
from ntc_export.util.errors import NtcError


def payload_rows(data: np.ndarray) -> list[bytes]:
    """A request's UINT8 [N, L] rows -> one payload each. A tensor is rectangular while range-coded payloads differ
    in length, so a row may end in zero bytes after its payload; anything else after it is an error."""
    rows = []
    for i, row in enumerate(np.asarray(data, np.uint8)):
        raw = row.tobytes()
        end = payload_length(raw)
        if end is not None and end < len(raw):
            if any(raw[end:]):
                raise NtcError(f"payload {i}: {len(raw) - end} bytes after its end are not zero padding")
            raw = raw[:end]
        rows.append(raw)
    return rows


def _padded(side: int, unit: int) -> int:
    return -(-side // unit) * unit


class Unpacker:
    """Payloads of one compressor (one grid per request) -> (decoder inputs {name: array [N, ...]}, grid (h, w))."""

    def __init__(self, params: dict[str, str], folder: str | Path = "."):
        self.family, self.fingerprint = params["family"], bytes.fromhex(params["fingerprint"])
        self.unit, self.body = int(params["unit"]), params["body"]
        self.inputs = [(str(n), int(c), int(t), int(w)) for n, c, t, w in json.loads(params["inputs"])]
        self.levels = int(params["levels"]) if params.get("levels") else None
        self.names = [i[0] for i in self.inputs]
        self.range_decoder = RangeDecoder(Path(folder) / params["weights"]) if self.body == "range_coded" else None

    def shapes(self, grid: tuple[int, int]) -> list[tuple[int, ...]]:
        """Each input's shape for one image on `grid`, padded to whole cells."""
        hp, wp = (_padded(s, self.unit) for s in grid)
        return [(c, hp // t, wp // t, *((w,) if w else ())) for _, c, t, w in self.inputs]

    def __call__(self, data: np.ndarray) -> tuple[dict[str, np.ndarray], tuple[int, int]]:
        payloads = payload_rows(data)
        parsed = expect_all(payloads, self.family, self.fingerprint)
        grid = parsed[0].grid
        if min(grid) < 1:
            raise NtcError(f"payload 0: token grid {grid[0]}x{grid[1]} is empty")
        if self.range_decoder is not None:
            return {self.names[0]: self.range_decoder(payloads)}, grid
        values = [self._values(p.body, grid, f"payload {i}") for i, p in enumerate(parsed)]
        return {n: np.stack([v[k] for v in values]) for k, n in enumerate(self.names)}, grid

    def _values(self, body: bytes, grid: tuple[int, int], what: str) -> list[np.ndarray]:
        """One payload's body -> its inputs' arrays (INT32), after checking its length and value range."""
        shapes = self.shapes(grid)
        counts = [int(np.prod(s)) for s in shapes]
        total = sum(counts)
        kind, _, arg = self.body.partition(":")
        if kind == "int32":
            need = 4 * total
        elif kind == "nibbles":
            need = -(-total // 2)
        elif kind == "bits":
            need = -(-total * int(arg) // 8)
        else:
            raise NtcError(f"payload step: unknown body layout {self.body!r}")
        if len(body) != need:
            raise NtcError(f"{what}: {len(body)} body bytes, a {grid[0]}x{grid[1]} grid needs {need}")
        if kind == "int32":
            flat = np.frombuffer(body, "<i4")
        elif kind == "nibbles":
            from ntc_export.models.ntc_grid import unpack_nibbles

            flat = unpack_nibbles(body)[:total]
        else:
            from ntc_export.models.vq import unpack_indices

            flat = unpack_indices(body, total, int(arg))
        if self.levels is not None and int(flat.max()) >= self.levels:
            raise NtcError(f"{what}: value {int(flat.max())} out of range (the model holds {self.levels})")
        bounds = np.cumsum([0, *counts])
        return [flat[a:b].astype(np.int32).reshape(s) for a, b, s in zip(bounds[:-1], bounds[1:], shapes)]


class RangeDecoder:
    """The hyperprior's entropy decoding: z's range decoding, the hyper-synthesis z_hat -> scales, y's range decoding
    with those scales -> y_hat [N, M, gh, gw] float32 (the decoder graph's "latents").

    The hyper-synthesis runs here, in the checkpoint's own float64 PyTorch code (models.hyperprior.decode_latents),
    not as the repository's hyper_synthesis plan called through BLS: the encoder picked each y symbol's scale-table
    index from float64 scales, one image at a time, and the decoder must pick the very same index or the range
    decoder loses sync for the rest of y (the payload's CRC then fails). A float32/fp16 engine or ONNX Runtime run
    rounds differently and can move a scale across a table boundary. The price is host time: this step is the
    ensemble's slowest on a CPU (range coding and the float64 transform on z's ceil(h/4) x ceil(w/4) cells), the
    decoder graph after it the fast part."""

    def __init__(self, checkpoint: Path):
        from ntc_export.models import load

        self.module = load(checkpoint).eval()

    def __call__(self, payloads: list[bytes]) -> np.ndarray:
        return self.module.decode_latents(payloads)
