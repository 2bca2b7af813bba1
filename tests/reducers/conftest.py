import numpy as np
import pytest
from reducer_grids import ODD_GRID, ODD_IMAGES, grid_photo_tokens

REAL_IMAGES = 8  # a few held-out photos: enough tokens to exercise every selection, fast on two cores


@pytest.fixture(scope="session")
def real_tokens() -> np.ndarray:
    """DINOv2-S/14 patch tokens [8, 256, 384] of held-out photographs: 8 seeded crops (224 px) taken in turn from the
    val split's two pinned photographs (tests/pinned_photos.py), the same on every machine."""
    from pinned_photos import pinned_tokens

    return np.ascontiguousarray(pinned_tokens("val", REAL_IMAGES).patch_tokens, dtype=np.float32)


@pytest.fixture(scope="session")
def odd_grid_photos() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens, CLS attention, keys) of 4 pinned crops on the non-square ODD_GRID (grid_photo_tokens)."""
    return grid_photo_tokens(ODD_GRID, ODD_IMAGES)


@pytest.fixture(scope="session")
def odd_grid_tokens(odd_grid_photos) -> np.ndarray:
    """Real patch tokens on the non-square ODD_GRID: [4, 13, 21, 384]."""
    tokens = odd_grid_photos[0]
    return np.ascontiguousarray(tokens[:, 1:].reshape(ODD_IMAGES, *ODD_GRID, -1), dtype=np.float32)
