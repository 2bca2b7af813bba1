"""Token orders: our projectors take the patch grid row-major; Qwen-VL processors emit patches window by window.

Qwen2-VL, Qwen2.5-VL and Qwen3-VL image processors reshape the image to (h/2, 2, w/2, 2) patches and transpose to
(h/2, w/2, 2, 2): the sequence walks the 2×2 merge windows in row-major order, and each window's 4 patches row-major
(top-left, top-right, bottom-left, bottom-right), so the merger takes 4 consecutive tokens as one. Grid token (r, c)
therefore sits at sequence position ((r//2)·(w/2) + c//2)·4 + (r%2)·2 + c%2. A request's images follow one another
(rows [Σ h·w, D] with `grid_thw`): what a converted Qwen merger's "packed" graph takes (models/hf_projectors.py).
"""

from ..models.grid import merge_order  # noqa: F401  (the order is a grid fact; hf re-exports it)
