"""Activation statistics with ONNX Runtime: chosen tensors become extra graph outputs, batches stream through.

Two passes over the calibration tokens: the first keeps running min/max/amax, the second fills a histogram of |x|
over [0, amax] (the range every calibrator needs fixed before counting).
"""

from dataclasses import dataclass, field

import numpy as np
import onnx

from ..errors import NtcError

NUM_BINS = 2048


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

    from ..ort_ops import register_custom_ops
    from ..runners import ort_session_options

    model = onnx.ModelProto.FromString(model.SerializeToString())
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


def batches(tokens: np.ndarray, batch: int):
    for i in range(0, len(tokens), batch):
        yield tokens[i:i + batch]


def _progress(description: str, total: int):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not console.is_terminal), total


def collect(model: onnx.ModelProto, tensors: list[str], tokens: np.ndarray, input_name: str = "tokens",
            batch: int = 8, num_bins: int = NUM_BINS) -> dict[str, TensorStats]:
    """Running min/max and |x| histograms of `tensors` over `tokens` (streamed in batches)."""
    sess = session_with_outputs(model, tensors)
    stats = {n: TensorStats(n, hist=np.zeros(num_bins, np.int64)) for n in tensors}
    nbatches = -(-len(tokens) // batch)
    progress, total = _progress("calibration statistics", 2 * nbatches)
    with progress:
        task = progress.add_task("stats", total=total)
        for x in batches(tokens, batch):
            for name, value in zip(tensors, sess.run(tensors, {input_name: x})):
                s = stats[name]
                if not np.all(np.isfinite(value)):
                    raise NtcError(f"tensor {name!r} is NaN/Inf on the calibration tokens")
                s.min = min(s.min, float(value.min()))
                s.max = max(s.max, float(value.max()))
                s.count += value.size
            progress.advance(task)
        for x in batches(tokens, batch):
            for name, value in zip(tensors, sess.run(tensors, {input_name: x})):
                s = stats[name]
                s.hist += np.histogram(np.abs(value), bins=num_bins, range=(0.0, max(s.amax, 1e-12)))[0]
            progress.advance(task)
    return stats
