import numpy as np
import pytest

REAL_IMAGES = 8  # a few held-out photos: enough tokens to exercise every selection, fast on two cores


@pytest.fixture(scope="session")
def real_tokens() -> np.ndarray:
    """DINOv2-S/14 patch tokens [8, 256, 384] of held-out photographs: 8 seeded crops (224 px) taken in turn from the
    val split's two pinned photographs (tests/pinned_photos.py), the same on every machine."""
    from pinned_photos import pinned_tokens

    return np.ascontiguousarray(pinned_tokens("val", REAL_IMAGES).patch_tokens, dtype=np.float32)
