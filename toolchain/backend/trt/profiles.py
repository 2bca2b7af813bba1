"""Optimization profiles: a min/opt/max shape triple for each dynamic network input, the token grid (h, w) they are
read off, and the check that a profile fits what the graph accepts (before any build)."""

import numbers
import re

from ...util.errors import NtcError

# Default profile: batch, and the token grid (h, w) at ViT patch 14: min 4x4 = 56 px sides (the smallest native
# grid under a 56*56 min_pixels budget, Qwen2-VL's), opt 16x16 = 224 px, max 48x48 = 672 px, any aspect in between.
DEFAULT_BATCH = (1, 1, 8)
DEFAULT_GRID = ((4, 4), (16, 16), (48, 48))
GRID_SYNTAX = "MINHxMINW:OPTHxOPTW:MAXHxMAXW"
_GRID_TEXT = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")


def grid_triple(grid) -> tuple[tuple[int, int], ...]:
    """min/opt/max token grids, each a side or (h, w) -> three (h, w); NtcError unless 1 <= min <= opt <= max on
    each axis."""
    try:
        if isinstance(grid, str) or any(isinstance(g, str) for g in grid):
            raise TypeError  # text goes through parse_grid
        entries = [(int(g), int(g)) if isinstance(g, numbers.Integral) else tuple(int(s) for s in g) for g in grid]
    except (TypeError, ValueError):
        entries = []
    if len(entries) != 3 or any(len(e) != 2 for e in entries):
        raise NtcError(f"grid {grid!r}: give min, opt, max as sides or (h, w) pairs")
    for axis, what in enumerate(("height", "width")):
        lo, opt, hi = (e[axis] for e in entries)
        if not 1 <= lo <= opt <= hi:
            raise NtcError(f"grid {format_grid(entries)}: {what} must be 1 <= min <= opt <= max, got {lo}, {opt}, {hi}")
    return tuple(entries)


def format_grid(grid) -> str:
    """Three (h, w) -> "4x4:16x16:48x48" (what --grid takes)."""
    return ":".join(f"{h}x{w}" for h, w in grid)


def parse_grid(text: str) -> tuple[tuple[int, int], ...]:
    """--grid "4x4:26x46:48x48" -> ((4, 4), (26, 46), (48, 48)); a one-line NtcError on anything else."""
    parts = str(text).split(":")
    matches = [_GRID_TEXT.match(p) for p in parts]
    if len(parts) != 3 or not all(matches):
        raise NtcError(f"--grid {text!r}: give {GRID_SYNTAX} token grids (h x w), e.g. {format_grid(DEFAULT_GRID)}")
    try:
        return grid_triple([(int(m.group(1)), int(m.group(2))) for m in matches])
    except NtcError as e:
        raise NtcError(f"--{e}") from None  # "--grid 4x4:16x16:8x8: height must be ..."


def admits(grid, data_grid: tuple[int, int]) -> bool:
    """Whether engines of the profile `grid` take a `data_grid` token grid (min <= side <= max on each axis)."""
    (lo, _, hi), (h, w) = grid_triple(grid), data_grid
    return lo[0] <= h <= hi[0] and lo[1] <= w <= hi[1]


def covering(grid, data_grids, step: int = 8) -> tuple[tuple[int, int], ...]:
    """The profile `grid` widened to admit every grid of the data (a side beyond the max rounds up to a multiple of
    `step`; below the min, the min becomes that side): the default profile never leaves the data outside."""
    (lo, opt, hi) = grid_triple(grid)
    lo = tuple(min([lo[a]] + [g[a] for g in data_grids]) for a in (0, 1))
    hi = tuple(max([hi[a]] + [-(-g[a] // step) * step for g in data_grids if g[a] > hi[a]]) for a in (0, 1))
    return lo, opt, hi


def check_grid_sides(grid, multiple: int = 1, rule: str | None = None, what: str = "the model") -> None:
    """A family whose grid sides must divide by `multiple` (Qwen's 2x2 merger: 2) cannot have engines tuned or
    bounded at other grids: a one-line NtcError naming the first such entry."""
    for label, (h, w) in zip(("min", "opt", "max"), grid_triple(grid)):
        if multiple > 1 and (h % multiple or w % multiple):
            raise NtcError(f"{what} needs {rule or f'grid sides divisible by {multiple}'}; --grid "
                           f"{format_grid(grid_triple(grid))} has {label} {h}x{w}")


def parse_batch(text: str) -> tuple[int, int, int]:
    """--batch "1,1,8" -> (1, 1, 8); a one-line NtcError unless 1 <= min <= opt <= max."""
    parts = str(text).split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
        raise NtcError(f"--batch {text!r}: give min,opt,max as three integers, e.g. 1,1,8")
    batch = tuple(int(p) for p in parts)
    if not 1 <= batch[0] <= batch[1] <= batch[2]:
        raise NtcError(f"--batch {text!r}: need 1 <= min <= opt <= max")
    return batch


def token_profile(shape: list[int], batch=DEFAULT_BATCH, grid=DEFAULT_GRID) -> list[list[int]]:
    """min/opt/max shapes of a "tokens" input: [B, h, w, D] on the grid, or flat [B, h*w, D]."""
    batch, grid = tuple(batch), grid_triple(grid)
    if len(batch) != 3 or list(batch) != sorted(batch):
        raise NtcError(f"batch {batch} must be min <= opt <= max")
    dim = int(shape[-1])
    if len(shape) == 4:
        return [[int(b), h, w, dim] for b, (h, w) in zip(batch, grid)]
    return [[int(b), h * w, dim] for b, (h, w) in zip(batch, grid)]


def input_profiles(inputs: list[tuple[str, list[int]]], profiles: dict | None, batch=DEFAULT_BATCH,
                   grid=DEFAULT_GRID) -> dict[str, list[list[int]]]:
    """A min/opt/max triple for each dynamic input (name, shape with -1 for dynamic axes): given ones, the tokens
    default, else an error; each checked against the input's shape (`check_profile`)."""
    given = dict(profiles or {})
    chosen = {}
    for name, shape in inputs:
        if name in given:
            chosen[name] = check_profile(name, shape, given.pop(name))
        elif any(d < 0 for d in shape):
            if name == "tokens" and len(shape) in (3, 4) and shape[-1] > 0:
                chosen[name] = check_profile(name, shape, token_profile(shape, batch, grid))
            else:
                raise NtcError(f"input {name!r} has dynamic shape {shape}: give its min/opt/max profile")
    if given:
        raise NtcError(f"profiles given for inputs the model lacks: {', '.join(given)}")
    return chosen


def check_profile(name: str, shape: list[int], triple) -> list[list[int]]:
    """The triple as int lists, when it fits the input's `shape` (-1: a dynamic axis): same rank, 0 < min <= opt <=
    max, a static axis equal to its size; a one-line NtcError naming the axis otherwise."""
    triple = [list(map(int, s)) for s in triple]
    if len(triple) != 3 or any(len(s) != len(shape) for s in triple):
        raise NtcError(f"profile for {name!r} must be three shapes of rank {len(shape)} like {shape}, got {triple}")
    for axis, d in enumerate(shape):
        lo, opt, hi = (s[axis] for s in triple)
        if not 0 < lo <= opt <= hi:
            raise NtcError(f"profile for {name!r} axis {axis}: need 0 < min <= opt <= max, got {lo}, {opt}, {hi}")
        if d >= 0 and not lo == opt == hi == d:
            varies = f"{lo}..{hi}" if lo != hi else str(lo)
            raise NtcError(f"input {name!r} axis {axis} is static ({d}) in the graph but the profile asks {varies}: "
                           f"export that axis dynamic, or build with min = opt = max = {d} on it")
    return triple


def check_profiles(onnx_name: str, inputs: list[tuple[str, list[int]]], profiles: dict | None, batch=DEFAULT_BATCH,
                   grid=DEFAULT_GRID) -> dict[str, list[list[int]]]:
    """The profiles an engine of this graph gets (`input_profiles` on its ONNX inputs), checked before any build; the
    one-line error names the ONNX."""
    try:
        return input_profiles(inputs, profiles, batch, grid)
    except NtcError as e:
        raise NtcError(f"{onnx_name}: {e}") from None
