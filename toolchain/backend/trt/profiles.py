"""Optimization profiles: a min/opt/max shape triple for each dynamic network input."""

from ...util.errors import NtcError

# Default profile for the "tokens" input [B, N, D]: batch and square grid side, as (min, opt, max).
DEFAULT_BATCH = (1, 1, 8)
DEFAULT_GRID = (16, 16, 32)


def token_profile(dim: int, batch=DEFAULT_BATCH, grid=DEFAULT_GRID) -> dict[str, list[list[int]]]:
    """min/opt/max shapes of the "tokens" input [B, grid*grid, D]."""
    if len(batch) != 3 or len(grid) != 3 or list(batch) != sorted(batch) or list(grid) != sorted(grid):
        raise NtcError(f"batch {tuple(batch)} and grid {tuple(grid)} must each be min <= opt <= max")
    return {"tokens": [[int(b), int(g) * int(g), int(dim)] for b, g in zip(batch, grid)]}


def input_profiles(inputs: list[tuple[str, list[int]]], profiles: dict | None, batch=DEFAULT_BATCH,
                   grid=DEFAULT_GRID) -> dict[str, list[list[int]]]:
    """A min/opt/max triple for each dynamic input (name, shape with -1 for dynamic axes): given ones, the tokens
    default, else an error."""
    given = dict(profiles or {})
    chosen = {}
    for name, shape in inputs:
        if name in given:
            chosen[name] = _check_profile(name, shape, given.pop(name))
        elif any(d < 0 for d in shape):
            if name == "tokens" and len(shape) == 3 and shape[2] > 0:
                chosen[name] = token_profile(shape[2], batch, grid)["tokens"]
            else:
                raise NtcError(f"input {name!r} has dynamic shape {shape}: give its min/opt/max profile")
    if given:
        raise NtcError(f"profiles given for inputs the model lacks: {', '.join(given)}")
    return chosen


def _check_profile(name: str, shape: list[int], triple) -> list[list[int]]:
    triple = [list(map(int, s)) for s in triple]
    if len(triple) != 3 or any(len(s) != len(shape) for s in triple):
        raise NtcError(f"profile for {name!r} must be three shapes of rank {len(shape)}, got {triple}")
    for axis, d in enumerate(shape):
        lo, opt, hi = (s[axis] for s in triple)
        if not 0 < lo <= opt <= hi or (d >= 0 and not lo == opt == hi == d):
            raise NtcError(f"profile for {name!r} axis {axis}: need 0 < min <= opt <= max matching {shape}")
    return triple


