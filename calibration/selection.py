"""Choices made by measuring the quantized model: per-tensor method ("auto") and per-layer sensitivity.

auto: starting from every tensor at its MSE scale, each activation tensor in turn takes the method whose scale gives
the lowest output error with the other tensors fixed (one coordinate sweep, graph order).
sensitivity: quantize one layer at a time and measure the output cosine; with a target cosine, the most sensitive
layers go back to high precision, one at a time, until the whole model meets the target.
"""

import onnx

from .evaluation import Evaluator
from .qdq import Layer, insert_qdq


def choose_methods(model: onnx.ModelProto, layers: list[Layer], candidates: dict[str, dict[str, float]],
                   weight_scale, precision: str, evaluator: Evaluator, start: str = "mse"):
    """(tensor -> method, tensor -> {method: output error}) for every activation tensor of `layers`."""
    from .formats import scale_of

    chosen = {t: start for t in candidates}
    errors = {}
    for tensor, options in candidates.items():
        errors[tensor] = {}
        tried = {}
        for method, amax in options.items():
            if amax in tried:  # identical scale: identical model
                errors[tensor][method] = errors[tensor][tried[amax]]
                continue
            trial = {t: float(scale_of(candidates[t][chosen[t]], precision)) for t in candidates}
            trial[tensor] = float(scale_of(amax, precision))
            fid = evaluator.fidelity(insert_qdq(model, layers, trial, weight_scale, precision))
            errors[tensor][method] = evaluator.error(fid)
            tried[amax] = method
        chosen[tensor] = min(errors[tensor], key=errors[tensor].get)
    return chosen, errors


def layer_sensitivity(model: onnx.ModelProto, layers: list[Layer], act_scales, weight_scale, precision: str,
                      evaluator: Evaluator) -> dict[str, float]:
    """node -> output cosine with only that layer quantized (lower = more sensitive)."""
    return sensitivity_of(layers, lambda active: insert_qdq(model, active, act_scales, weight_scale, precision),
                          evaluator)


def sensitivity_of(layers: list, make, evaluator: Evaluator) -> dict[str, float]:
    """node -> output cosine of `make([layer])`, the model with only that layer quantized."""
    return {layer.node: evaluator.min_cosine(evaluator.fidelity(make([layer]))) for layer in layers}


def keep_until_target(model: onnx.ModelProto, layers: list[Layer], act_scales, weight_scale, precision: str,
                      evaluator: Evaluator, measure_sensitivity, target: float | None):
    """(layers to quantize, kept records, fidelity of the final model). Kept records say why: the layer's own
    cosine and the model cosine before it was kept. `measure_sensitivity()` -> {layer: cosine} runs only when the
    fully quantized model misses the target (one evaluation per layer)."""
    return keep_layers(layers, lambda active: insert_qdq(model, active, act_scales, weight_scale, precision),
                       evaluator, measure_sensitivity, target)


def keep_layers(layers: list, make, evaluator: Evaluator, measure_sensitivity, target: float | None):
    """keep_until_target for any format: `make(active layers)` returns the model with those layers quantized."""
    active = list(layers)
    kept = []
    fid = evaluator.fidelity(make(active))
    if target is not None and evaluator.min_cosine(fid) < target:
        sensitivity = measure_sensitivity()
    while target is not None and active and evaluator.min_cosine(fid) < target:
        worst = min(active, key=lambda layer: sensitivity[layer.node])
        kept.append({"layer": worst.node, "op_type": worst.op_type, "sensitivity_cosine": sensitivity[worst.node],
                     "model_cosine_before": evaluator.min_cosine(fid),
                     "reason": f"most sensitive remaining layer (cosine {sensitivity[worst.node]:.6f} when quantized "
                               f"alone); model cosine {evaluator.min_cosine(fid):.6f} < target {target}"})
        active.remove(worst)
        fid = evaluator.fidelity(make(active))
        kept[-1]["model_cosine_after"] = evaluator.min_cosine(fid)
    return active, kept, fid
