"""A tiny projector and random token files for the report tests' main-job runs."""

import numpy as np
import torch
from ntc_export.data.tokens import TokenSet
from ntc_export.models import build, save


def tiny_projector_inputs(tmp, sets=(("data", 12),)):
    """Write tmp/tiny.pt (a 48-d pixel-shuffle projector with a 4-class head) and one token file per (name, samples)
    of random 8x8 grids, drawn in order from one seeded generator."""
    torch.manual_seed(0)
    save(build("pixel_shuffle", {"input_dim": 48, "output_dim": 32, "num_classes": 4}), tmp / "tiny.pt")
    rng = np.random.default_rng(0)
    for name, n in sets:
        TokenSet(rng.standard_normal((n, 1 + 64, 48)).astype(np.float32), (8, 8), rng.integers(0, 4, n),
                 {"source": "test"}).save(tmp / f"{name}.npz")
