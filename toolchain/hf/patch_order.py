"""Token orders: our projectors take the patch grid row-major; Qwen-VL processors emit patches window by window.

Qwen2-VL, Qwen2.5-VL and Qwen3-VL image processors reshape the image to (h/2, 2, w/2, 2) patches and transpose to
(h/2, w/2, 2, 2): the sequence walks the 2×2 merge windows in row-major order, and each window's 4 patches row-major
(top-left, top-right, bottom-left, bottom-right), so the merger takes 4 consecutive tokens as one. Grid token (r, c)
therefore sits at sequence position ((r//2)·(w/2) + c//2)·4 + (r%2)·2 + c%2. A request's images follow one another
(rows [Σ h·w, D] with `grid_thw`): what a converted Qwen merger's "packed" graph takes (models/hf_projectors.py).
"""

import numpy as np

from ..util.errors import NtcError


def merge_order(h: int, w: int, k: int = 2) -> np.ndarray:
    """order[s] = row-major index of the grid token at processor sequence position s, so that
    `processor_tokens = row_major_tokens[:, order]` and `row_major_tokens = processor_tokens[:, np.argsort(order)]`."""
    if h % k or w % k:
        raise NtcError(f"a {h}x{w} token grid does not split into {k}x{k} merge windows")
    return np.arange(h * w).reshape(h // k, k, w // k, k).transpose(0, 2, 1, 3).reshape(-1)
