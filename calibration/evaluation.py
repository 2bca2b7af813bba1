"""Output error of a candidate Q/DQ model against the fp32 model, on fixed feeds (ONNX Runtime CPU)."""

import numpy as np
import onnx

from ..evaluate.fidelity import concat_outputs, fidelity
from .stats import batches, session_with_outputs


def run_model(model: onnx.ModelProto, feeds, batch: int = 16) -> dict[str, np.ndarray]:
    """The model's outputs on `feeds` (a feeds dict or FeedGroups: concatenated as `concat_outputs` does)."""
    names = [o.name for o in model.graph.output]
    sess = session_with_outputs(model, [])
    return concat_outputs([dict(zip(names, sess.run(names, x))) for x in batches(feeds, batch)])


class Evaluator:
    """Holds the fp32 outputs on `feeds`; scores candidate models by cosine and relative error."""

    def __init__(self, fp32_model: onnx.ModelProto, feeds: dict[str, np.ndarray], reference: dict | None = None):
        self.feeds = feeds
        self.reference = reference if reference is not None else run_model(fp32_model, feeds)

    def fidelity(self, model: onnx.ModelProto) -> dict[str, dict[str, float]]:
        got = run_model(model, self.feeds)
        return {n: fidelity(ref, got[n]) for n, ref in self.reference.items()}

    @staticmethod
    def min_cosine(fid: dict[str, dict[str, float]]) -> float:
        return min(f["cosine"] for f in fid.values())

    @staticmethod
    def error(fid: dict[str, dict[str, float]]) -> float:
        """Sum over outputs of the relative squared error (each output weighs the same)."""
        return float(sum(f["rel_l2"] ** 2 for f in fid.values()))
