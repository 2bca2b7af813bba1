"""Decode routes for payloads read from a store, one grid at a time: payloads -> patch tokens [n, h*w, D].

- "host": the compressor's own `decode` (every family; PyTorch on the CPU, plus the family's range or bit decoder).
- "ort": the body unpacked on the host, then the exported fp32 decoder graph in ONNX Runtime through OrtRunner, on
  the providers given (CPU here; CUDA or TensorRT execution providers where onnxruntime-gpu has them). Families
  whose body is the decoder graph's input as it is: "vq" (packed codebook indices). Others (a hyperprior's range
  coder needs the hyper-synthesis scales first) decode on the host.
"""

import numpy as np

from ..util.errors import NtcError

ROUTES = ("host", "ort")
ORT_FAMILIES = ("vq",)


class HostDecoder:
    name = "host"

    def __init__(self, module):
        self.module = module

    def __call__(self, payloads: list[bytes]) -> np.ndarray:
        return np.asarray(self.module.decode(payloads), dtype=np.float32)


def _vq_feed(module, payloads: list[bytes]) -> tuple[dict, tuple[int, int], tuple[int, int]]:
    """VQ payloads of one grid -> ({"indices": INT32 [n, C, h/2, w/2]}, padded grid, grid)."""
    from ..codec.payload import expect_all
    from ..models.grid import padded
    from ..models.vector_quantizer import index_bits
    from ..models.vq import MERGE, unpack_indices

    parsed = expect_all(payloads, module.family, module.fingerprint())
    h, w = parsed[0].grid
    shape = (module.channels, padded(h, MERGE) // MERGE, padded(w, MERGE) // MERGE)
    bits, count = index_bits(module.codewords), int(np.prod(shape))
    size = -(-count * bits // 8)
    rows = []
    for i, p in enumerate(parsed):
        if len(p.body) != size:
            raise NtcError(f"payload {i}: {len(p.body)} body bytes, grid {h}x{w} needs {size}")
        rows.append(unpack_indices(p.body, count, bits).reshape(shape))
    return {"indices": np.stack(rows).astype(np.int32)}, (shape[1] * MERGE, shape[2] * MERGE), (h, w)


class OrtDecoder:
    """The decoder graph exported once (cached by model fingerprint) and run by ONNX Runtime."""

    name = "ort"

    def __init__(self, module, providers=None):
        from ..backend.onnx.export import to_onnx_fp32
        from ..backend.onnxrt.runner import OrtRunner
        from ..util.atomic import atomic_path
        from ..util.paths import cache_dir

        if module.family not in ORT_FAMILIES:
            raise NtcError(f"the {module.family!r} family decodes on the host only (route ort takes "
                           f"{', '.join(ORT_FAMILIES)})")
        self.module = module
        path = cache_dir("store-decoders") / f"{module.arch}-{module.fingerprint().hex()}.onnx"
        if not path.is_file():
            import onnx

            with atomic_path(path) as tmp:
                onnx.save(to_onnx_fp32(module.eval()), str(tmp))
        self.runner = OrtRunner(path, providers=providers)

    def __call__(self, payloads: list[bytes]) -> np.ndarray:
        from ..models.grid import crop_grid

        feeds, padded_grid, grid = _vq_feed(self.module, payloads)
        tokens = next(iter(self.runner.run(feeds).values()))
        return np.asarray(crop_grid(tokens, padded_grid, grid), dtype=np.float32)


def decoder(module, route: str = "host", providers=None):
    if route == "host":
        return HostDecoder(module)
    if route == "ort":
        return OrtDecoder(module, providers)
    raise NtcError(f"unknown decode route {route!r} (choose from {', '.join(ROUTES)})")
