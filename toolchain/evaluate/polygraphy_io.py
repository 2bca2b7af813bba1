"""Run results in Polygraphy's RunResults JSON format, so `polygraphy` tools (e.g. `run --load-outputs`) read them."""

from pathlib import Path

import numpy as np

from ..util.atomic import atomic_path
from ..util.errors import NtcError


def _quiet():
    """Polygraphy logs every save/load at INFO; keep the report's output clean."""
    from polygraphy.logger import G_LOGGER

    return G_LOGGER.verbosity(G_LOGGER.WARNING)


def to_run_results(runs: dict[str, dict[str, np.ndarray]]):
    """{runner name: {output name: array}} -> polygraphy.comparator.RunResults (one iteration per runner)."""
    from polygraphy.comparator import IterationResult, RunResults

    results = RunResults()
    for runner_name, outputs in runs.items():
        if not isinstance(outputs, dict) or not outputs:
            raise NtcError(f"run {runner_name!r} has no outputs to save")
        arrays = {name: np.asarray(value) for name, value in outputs.items()}
        results.append((runner_name, [IterationResult(outputs=arrays, runner_name=runner_name)]))
    return results


def save_polygraphy_results(path, runs: dict[str, dict[str, np.ndarray]]) -> Path:
    """Write `runs` as a Polygraphy RunResults JSON file (atomically); returns the path."""
    if not runs:
        raise NtcError("no runs to save as Polygraphy results")
    results = to_run_results(runs)
    path = Path(path)
    with atomic_path(path) as tmp, _quiet():
        results.save(str(tmp))
    return path


def load_polygraphy_results(path) -> dict[str, dict[str, np.ndarray]]:
    """Read a Polygraphy RunResults JSON file back into {runner name: {output name: array}} (first iteration)."""
    from polygraphy.comparator import RunResults

    path = Path(path)
    if not path.is_file():
        raise NtcError(f"{path}: no such Polygraphy results file")
    try:
        with _quiet():
            results = RunResults.load(str(path))
    except Exception as e:  # Polygraphy raises plain exceptions for malformed JSON
        raise NtcError(f"{path}: not a Polygraphy RunResults file ({str(e).splitlines()[0][:200]})") from None
    return {name: {k: np.asarray(v) for k, v in iters[0].items()} for name, iters in results.items()}
