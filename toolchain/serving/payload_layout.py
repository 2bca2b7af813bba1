"""The payload step's parameters for one compressor, read off its checkpoint: how each family's payload body stores
the decoder graph's inputs (python_backend/unpacking.py reads them back)."""

import json
from pathlib import Path

from ..util.errors import NtcError

WEIGHTS = "model.pt"  # the checkpoint's copy in a range-decoding step's version folder


def _body(module) -> tuple[str, dict]:
    """(body layout, extra parameters) of the family's payloads (see each family's `encode`)."""
    if module.family == "bc_autoencoder":
        return "int32", {}
    if module.family == "vq":
        from ..models.vector_quantizer import index_bits

        return f"bits:{index_bits(module.codewords)}", {"levels": module.codewords}
    if module.family == "ntc_grid":
        return ("nibbles" if module.storage == "int4" else "int32"), {}
    if module.family == "hyperprior":
        return "range_coded", {"weights": WEIGHTS}
    raise NtcError(f"{module.arch}: no payload step for the {module.family!r} family")


def input_layout(module) -> list[list]:
    """[name, channels, tokens per cell side, words per block or 0] of each decoder input, from the module's own
    example inputs on a grid of unequal sides (so rows and columns are told apart)."""
    h, w = module.grid_multiple, 2 * module.grid_multiple
    layout = []
    for name, t in zip(module.input_names, module.example_inputs(1, (h, w))):
        shape = tuple(t.shape)
        if len(shape) not in (4, 5) or h % shape[2] or w % shape[3] or h // shape[2] != w // shape[3]:
            raise NtcError(f"{module.arch}: decoder input {name} {list(shape)} is not [B, C, cells_y, cells_x(, W)]")
        layout.append([name, shape[1], h // shape[2], shape[4] if len(shape) == 5 else 0])
    return layout


def step_params(module, checkpoint: Path) -> tuple[dict, dict]:
    """(the payload step's parameters, files its version folder holds {name: source}) for a compressor."""
    if not module.is_compressor:
        raise NtcError(f"{checkpoint} ({module.arch}) is not a token compressor")
    body, extra = _body(module)
    params = {"family": module.family, "fingerprint": module.fingerprint().hex(), "unit": module.grid_multiple,
              "body": body, "inputs": json.dumps(input_layout(module)), **extra}
    return params, ({WEIGHTS: Path(checkpoint)} if "weights" in extra else {})
