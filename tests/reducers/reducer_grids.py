"""Real ViT tokens on a non-square grid, shared by the reducer tests (a module of its own: test modules import it by
name, which `conftest` is not across test folders)."""

from functools import lru_cache

import numpy as np

ODD_GRID = (13, 21)  # a non-square grid of an odd token count (273): ToMe's A set is one longer than its B set
ODD_IMAGES = 4


@lru_cache(maxsize=None)
def grid_photo_tokens(grid: tuple[int, int], count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DINOv2-S/14 (tokens [count, 1 + h*w, 384] CLS first, CLS attention [count, 6, h*w], keys [count, 1 + h*w,
    384]) of the val split's pinned crops resized to the grid's pixels (14 px patches): real tokens on a non-square
    grid, the same on every machine. Cached: callers must not modify the arrays."""
    import torch
    import torch.nn.functional as F
    from ntc_export.data import vit
    from ntc_export.data.tokens import IMAGENET_MEAN, IMAGENET_STD
    from pinned_photos import pinned_crops

    h, w = grid
    x = torch.cat([F.interpolate(torch.from_numpy(np.array(c)).permute(2, 0, 1)[None].float() / 255,
                                 size=(h * vit.PATCH, w * vit.PATCH), mode="bilinear", antialias=True)
                   for c in pinned_crops("val", count)])
    x = (x.numpy() - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]
    return vit.run_tokens_attention(x.astype(np.float32))
