"""Activation statistics with ONNX Runtime: chosen tensors become extra graph outputs, batches stream through.

Two passes over the calibration feeds: the first keeps running min/max/amax, the second fills a histogram of |x|
over [0, amax] (the range every calibrator needs fixed before counting). Graphs with ntc:: plugin nodes run through
the same ONNX Runtime copy `OrtRunner` makes (`ort_ops.prepare_for_ort`); tensor names are unchanged by it.
"""

from dataclasses import dataclass, field

import numpy as np
import onnx

from ..evaluate.fidelity import concat_outputs
from ..util.errors import NtcError
from ..evaluate.feeds import feed_groups

NUM_BINS = 2048
KEEP_BYTES = 256 << 20  # first-pass activations kept for the histogram pass up to this size


@dataclass
class TensorStats:
    name: str
    min: float = np.inf
    max: float = -np.inf
    count: int = 0
    hist: np.ndarray = field(default_factory=lambda: np.zeros(NUM_BINS, np.int64))

    @property
    def amax(self) -> float:
        return float(max(abs(self.min), abs(self.max))) if self.count else 0.0

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(0.0, max(self.amax, 1e-12), len(self.hist) + 1)


def session_with_outputs(model: onnx.ModelProto, names: list[str], threads: int | None = None):
    """An ORT CPU session of `model` that also returns the tensors `names` (ntc:: custom ops registered)."""
    import onnxruntime as ort

    from ..backend.onnxrt.runner import ort_session_options
    from ..ops.ort_registry import has_plugin_nodes, prepare_for_ort, register_custom_ops

    model = onnx.ModelProto.FromString(model.SerializeToString())
    if has_plugin_nodes(model):
        model = prepare_for_ort(model)
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    so = ort_session_options(threads)
    register_custom_ops(so)
    try:
        return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT's own exception types; the first line names the problem
        raise NtcError(f"ONNX Runtime cannot run the model for calibration: "
                       f"{str(e).strip().splitlines()[0][:300]}") from None


def batches(feeds, batch: int):
    """Consecutive slices along axis 0 of every feed (of FeedGroups: group by group, a batch never mixes grids)."""
    for idx, group in feed_groups(feeds):
        for i in range(0, len(idx), batch):
            yield {k: v[i:i + batch] for k, v in group.items()}


def num_batches(feeds, batch: int) -> int:
    return sum(-(-len(idx) // batch) for idx, _ in feed_groups(feeds))


def _progress(description: str, total: int):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not console.is_terminal), total


def _run(sess, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    try:
        return sess.run(names, feeds)
    except Exception as e:  # ORT's own exception types: a grid or width the graph cannot take
        shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in feeds.items())
        raise NtcError(f"the model cannot run on the calibration data ({shapes}): "
                       f"{str(e).strip().splitlines()[0][:300]}") from None


def collect(model: onnx.ModelProto, tensors: list[str], feeds, batch: int = 8,
            num_bins: int = NUM_BINS, outputs: dict | None = None) -> dict[str, TensorStats]:
    """Running min/max and |x| histograms of `tensors` over `feeds` (a feeds dict or FeedGroups, streamed in
    batches). The first pass keeps its values while they fit in KEEP_BYTES, so the histogram pass need not run the
    model again; `outputs`, when given, receives the model's own outputs of that pass (the fp32 reference, without
    another run; several grids combined as concat_outputs does)."""
    names = [o.name for o in model.graph.output]
    wanted = list(dict.fromkeys(tensors + (names if outputs is not None else [])))
    sess = session_with_outputs(model, wanted)
    stats = {n: TensorStats(n, hist=np.zeros(num_bins, np.int64)) for n in tensors}
    nbatches = num_batches(feeds, batch)
    progress, total = _progress("calibration statistics", 2 * nbatches)
    kept, kept_bytes, parts = [], 0, []
    with progress:
        task = progress.add_task("stats", total=total)
        for x in batches(feeds, batch):
            values = dict(zip(wanted, _run(sess, wanted, x)))
            for name in tensors:
                value, s = values[name], stats[name]
                if not np.all(np.isfinite(value)):
                    raise NtcError(f"tensor {name!r} is NaN/Inf on the calibration data")
                s.min = min(s.min, float(value.min()))
                s.max = max(s.max, float(value.max()))
                s.count += value.size
            if outputs is not None:
                parts.append({name: values[name] for name in names})
            if kept is not None:
                kept_bytes += sum(values[n].nbytes for n in tensors)
                kept = kept + [[values[n] for n in tensors]] if kept_bytes <= KEEP_BYTES else None
            progress.advance(task)
        again = kept if kept is not None else (sess.run(tensors, x) for x in batches(feeds, batch))
        for row in again:
            for name, value in zip(tensors, row):
                s = stats[name]
                s.hist += np.histogram(np.abs(value), bins=num_bins, range=(0.0, max(s.amax, 1e-12)))[0]
            progress.advance(task)
    if outputs is not None:
        outputs.update(concat_outputs(parts))
    return stats
