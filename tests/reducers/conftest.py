import numpy as np
import pytest

REAL_IMAGES = 8  # a few held-out photos: enough tokens to exercise every selection, fast on two cores


@pytest.fixture(scope="session")
def real_tokens() -> np.ndarray:
    """DINOv2-S/14 patch tokens [8, 256, 384] of held-out photographs (the photo corpus's val split, 224 px)."""
    from ntc_export.data.tokens import builtin_tokens

    tokens = builtin_tokens("photos", 224, split="val").patch_tokens
    pick = np.linspace(0, len(tokens) - 1, REAL_IMAGES).round().astype(int)  # spread over different photographs
    return np.ascontiguousarray(tokens[pick], dtype=np.float32)
