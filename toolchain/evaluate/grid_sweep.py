"""Any-grid sweep: each exported graph (one fp32 and one fp16 file per graph, whatever the grid) run by ONNX Runtime
at token grids of every shape against PyTorch, on real ViT tokens of real photographs at each grid."""

from pathlib import Path

from ..util.errors import NtcError

# Grids of the issue: the smallest, odd and non-square, LLaVA-1.5 (24x24), Qwen2.5-VL 1280x720 after the merger
# (26x46), DINOv2's 518 px (37x37), a portrait 3:2 (48x32).
SWEEP_GRIDS = ((1, 1), (7, 5), (24, 24), (26, 46), (37, 37), (48, 32))


def family_grid(module, grid: tuple[int, int]) -> tuple[int, int]:
    """The grid a family with a real side constraint is swept at instead of `grid`: each side rounded up to its
    multiple (even sides for 2x2 mergers), and up to its smallest token count (a reducer keeping k tokens)."""
    m = getattr(module, "side_multiple", 1) or 1
    h, w = (-(-s // m) * m for s in grid)
    least = int(getattr(module, "min_tokens", 1) or 1)
    while h * w < least:  # grow the shorter side (kept a multiple) until the reducer has tokens to drop
        h, w = (h + m, w) if h <= w else (h, w + m)
    return h, w


def photo_tokens(grid: tuple[int, int], count: int = 2):
    """A TokenSet of `count` scikit-image photographs resized to the grid's pixels (14 px patches), with the ViT's
    CLS attention and keys: real tokens at exactly this grid."""
    import skimage.data

    from ..data import vit
    from ..data.tokens import TokenSet, extract_tokens_attention

    h, w = grid
    pictures = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()][:count]
    tokens, attention, keys = extract_tokens_attention(pictures, (h * vit.PATCH, w * vit.PATCH), progress=False)
    return TokenSet(tokens, (h, w), attention=attention, keys=keys)


def sweep_graph(name: str, graph, paths: dict[str, Path], grids=SWEEP_GRIDS) -> list[dict]:
    """Validation records of one exported graph (`paths`: precision -> ONNX file) at each grid, each record with
    the grid asked for and the grid run; a grid the family cannot take gives the family's one-line error instead."""
    from .validate import validate_onnx

    rows = []
    for asked in grids:
        grid = family_grid(graph, asked)
        tokens = photo_tokens(grid)
        records = validate_onnx(name, graph, paths, tokens)
        rows += [{**r, "grid_asked": list(asked), "grid": list(grid)} for r in records]
        if grid != asked:  # the asked grid itself must be refused in one line, before any work
            rows.append({"model": name, "grid_asked": list(asked), "grid": list(asked), "refused": _refusal(graph,
                                                                                                         asked)})
    return rows


def _refusal(graph, grid: tuple[int, int]) -> str:
    import torch

    try:
        graph.check_token_grid(torch.zeros(1, *grid, graph.input_dim))
    except NtcError as e:
        return str(e)
    raise NtcError(f"{getattr(graph, 'arch', type(graph).__name__)} takes a {grid[0]}x{grid[1]} grid but the sweep "
                   "rounded it: its side_multiple/min_tokens disagree with check_token_grid")
