"""`calibrate`: fp32 ONNX + real data -> strongly typed Q/DQ ONNX (INT8 or FP8 E4M3) and a scale cache, or a
weight-only fp16 graph (INT4 AWQ or NVFP4, weight_only.py) and its record.

Data: float tokens for a model with one float input, or a feeds dict {input name: array} for any model (e.g. the
BC-autoencoder decoder's INT32 blocks from `module.prepare_inputs(patch_tokens)`). Only MatMul/Gemm/Conv with
constant weights are quantized; inputs, ntc:: plugin nodes and everything else keep their types.
"""

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from ..util.atomic import atomic_path
from ..util.errors import NtcError
from ..util.hashing import sha256_file
from . import cache
from .calibrators import METHODS, PERCENTILE, check_method, compute_amax
from ..evaluate.feeds import FeedGroups, head
from .data import feeds_hash, load_feeds
from .evaluation import Evaluator
from .formats import check_precision, scale_of
from .plugins import apply_to_plugin_graph, graph_tensors, non_float_tensors, plugin_boundaries
from .qdq import constants, find_layers, insert_qdq, node_names, weight_scales
from .selection import choose_methods, keep_until_target, layer_sensitivity
from .stats import NUM_BINS, collect
from .weight_only import WEIGHT_ONLY, check_block, quantize_weight_only

AUTO_SAMPLES = 32  # calibration samples used to score per-tensor method choices


@dataclass
class CalibrationResult:
    precision: str
    method: str
    model_path: Path
    cache_path: Path
    reused: bool
    cache_message: str
    activations: dict  # tensor -> {amax, scale, method, candidates}
    weights: dict  # initializer -> {axis, scales}
    quantized_layers: list
    kept_high_precision: list  # [{layer, sensitivity_cosine, reason, ...}]
    sensitivity: dict  # layer -> output cosine with only that layer quantized
    fidelity: dict  # output -> {cosine, snr_db, ...} vs fp32 ONNX on the evaluation data
    evaluated_on: str
    plugin: dict | None = None
    plugin_model_path: Path | None = None
    messages: list = field(default_factory=list)
    weight_bytes: dict | None = None  # graph -> bytes of its constants (weight-only formats: fp16 and low-bit)
    fidelity_runtime: str | None = None  # what computed the fidelity (weight-only formats)

    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def _save_model(model: onnx.ModelProto, dest: Path) -> None:
    onnx.checker.check_model(model)
    with atomic_path(dest) as tmp:
        onnx.save_model(model, str(tmp))


def _say(log, messages: list, text: str) -> None:
    messages.append(text)
    log(text)


def _default_log(text: str) -> None:
    print(text, file=sys.stderr)


def _head_outputs(reference: dict, feeds, n: int) -> dict | None:
    """The fp32 outputs of the first `n` samples; None for FeedGroups (their outputs are flattened across grids, so
    the evaluator runs fp32 on those samples itself)."""
    return None if isinstance(feeds, FeedGroups) else {k: v[:n] for k, v in reference.items()}


def _compute(model, layers, feeds, holdout, precision, method, target_cosine, extra_tensors):
    """Statistics -> per-tensor candidates -> chosen scales -> sensitivity -> kept layers (the cache body)."""
    acts = list(dict.fromkeys(l.activation for l in layers))
    reference = {}  # fp32 outputs on the calibration feeds, from the statistics pass
    stats = collect(model, list(dict.fromkeys(acts + extra_tensors)), feeds, outputs=reference)
    candidates = {t: {m: compute_amax(m, s.hist, s.edges, s.amax, precision) for m in METHODS[precision]}
                  for t, s in stats.items()}
    consts = constants(model.graph)
    w_scales = {l.weight: weight_scales(consts[l.weight], l.axis, precision) for l in layers}
    auto_errors = {}
    if method == "auto":
        scorer = Evaluator(model, head(feeds, AUTO_SAMPLES), _head_outputs(reference, feeds, AUTO_SAMPLES))
        act_candidates = {t: candidates[t] for t in acts}
        chosen, auto_errors = choose_methods(model, layers, act_candidates, w_scales, precision, scorer)
        chosen.update({t: "mse" for t in extra_tensors if t not in chosen})
    else:
        chosen = {t: method for t in candidates}
    activations = {t: {"amax": candidates[t][chosen[t]], "scale": float(scale_of(candidates[t][chosen[t]], precision)),
                       "method": chosen[t], "candidates": candidates[t], "observed_min": stats[t].min,
                       "observed_max": stats[t].max, **({"auto_output_error": auto_errors[t]} if t in auto_errors
                                                         else {})}
                   for t in candidates}
    act_scales = {t: a["scale"] for t, a in activations.items()}
    evaluator = Evaluator(model, holdout) if holdout is not None else Evaluator(model, feeds, reference)
    # Per-layer sensitivity costs one evaluation per layer: measured for held-out data (reported), or when the
    # target cosine needs layers kept in high precision.
    sensitivity = layer_sensitivity(model, layers, act_scales, w_scales, precision, evaluator) \
        if holdout is not None else {}

    def measure_sensitivity() -> dict:
        if not sensitivity:
            sensitivity.update(layer_sensitivity(model, layers, act_scales, w_scales, precision, evaluator))
        return sensitivity

    active, kept, fid = keep_until_target(model, layers, act_scales, w_scales, precision, evaluator,
                                          measure_sensitivity,
                                          target_cosine)
    by_name = {l.node: l for l in layers}
    weights = {l.weight: {"axis": l.axis, "scales": w_scales[l.weight].tolist()} for l in active}
    return {"activations": activations, "weights": weights, "quantized_layers": [l.node for l in active],
            "kept_high_precision": kept, "sensitivity": sensitivity, "fidelity": fid,
            "layers": {n: {"op_type": l.op_type, "activation": l.activation, "weight": l.weight, "axis": l.axis}
                       for n, l in by_name.items()}}


def _load(path: Path) -> onnx.ModelProto:
    if not path.exists():
        raise NtcError(f"{path}: no such ONNX file")
    try:
        return node_names(onnx.load(str(path)))
    except Exception as e:  # protobuf decode errors have no common type
        raise NtcError(f"{path}: not a readable ONNX model ({str(e).splitlines()[0][:200]})") from None


def _weight_only(path: Path, model, feeds, held, kind: str, precision: str, out_dir, target_cosine, block_size,
                 log) -> CalibrationResult:
    """INT4 (AWQ) / NVFP4 weight-only graph of `model` in fp16: written, recorded, returned (see weight_only.py)."""
    from ..backend.onnx.export import to_fp16

    block = check_block(precision, block_size)
    layers = find_layers(model)
    messages = []
    _say(log, messages, f"{precision}: AWQ scale and clip search on {len(layers)} candidate layers, block {block}")
    body = quantize_weight_only(model, to_fp16(model), layers, feeds, held, precision, block, target_cosine)
    qmodel, reference = body.pop("model"), body.pop("reference_model")
    qmodel.doc_string = f"ntc-export {precision} weight-only (AWQ, block {block}) of {path.name}"
    out_dir = Path(out_dir)
    out_path = out_dir / f"model.{precision}.onnx"
    _save_model(qmodel, out_path)
    if reference is not None:  # what ONNX Runtime validates: the same weights as float constants
        reference.doc_string = f"ntc-export {precision} reference form (numpy-dequantized weights) of {path.name}"
        _save_model(reference, out_dir / f"model.{precision}.reference.onnx")
    cpath = cache.cache_path(out_dir, precision)
    key = {"model_sha256": sha256_file(path), "data_sha256": feeds_hash(feeds), "holdout_sha256": feeds_hash(held),
           "precision": precision, "method": "awq", "target_cosine": target_cosine,
           "settings": {"block": block}, "versions": cache.tool_versions()}
    cache.write(cpath, key, body)  # a record of the search: the codes are recomputed from the model each run
    for k in body["kept_high_precision"]:
        _say(log, messages, f"kept {k['layer']} in fp16: {k['reason']}")
    return CalibrationResult(
        precision=precision, method="awq", model_path=out_path, cache_path=cpath, reused=False,
        cache_message=f"{precision}: weight-only search recorded in {cpath}", activations={}, weights=body["weights"],
        quantized_layers=body["quantized_layers"], kept_high_precision=body["kept_high_precision"],
        sensitivity=body["sensitivity"], fidelity=body["fidelity"],
        evaluated_on=f"{'held-out' if held is not None else 'calibration'} {kind}", messages=messages,
        weight_bytes=body["weight_bytes"], fidelity_runtime=body["fidelity_runtime"])


def calibrate(onnx_fp32_path, calib_tokens, precision: str, method: str, out_dir, target_cosine: float | None = None,
              holdout=None, plugin_onnx=None, log=_default_log, block_size: int | None = None) -> CalibrationResult:
    """Calibrate `onnx_fp32_path` on `calib_tokens` (float tokens, or a feeds dict {input name: array} naming every
    model input) and write `<out_dir>/model.<precision>.onnx` (+ the plugin graph's Q/DQ copy
    `model.<precision>.plugin.onnx` when `plugin_onnx` is given) and the cache `<out_dir>/calibration/<precision>.json`.
    `holdout` (same kind) scores sensitivity and fidelity (default: the calibration data). int4/nvfp4 are weight-only
    (`method` unused; `block_size`: int4's block, default 128)."""
    if target_cosine is not None and not 0.0 < target_cosine <= 1.0:
        raise NtcError(f"target cosine {target_cosine} is outside (0, 1]")
    path = Path(onnx_fp32_path)
    if precision in WEIGHT_ONLY and plugin_onnx is not None:
        raise NtcError(f"{precision} is weight-only: plugin graphs take int8/fp8 scales only")
    if precision not in WEIGHT_ONLY:
        precision = check_precision(precision)
        method = check_method(method, precision)
    model = _load(path)
    feeds = load_feeds(calib_tokens, model)
    kind = "feeds" if isinstance(calib_tokens, (dict, FeedGroups)) else "tokens"
    held = load_feeds(holdout, model, "held-out") if holdout is not None else None
    if precision in WEIGHT_ONLY:
        return _weight_only(path, model, feeds, held, kind, precision, out_dir, target_cosine, block_size, log)
    if plugin_onnx is not None and not Path(plugin_onnx).exists():
        raise NtcError(f"{plugin_onnx}: no such plugin ONNX file")
    plugin_model = onnx.load(str(plugin_onnx)) if plugin_onnx is not None else None
    layers = find_layers(model)
    if not layers:
        raise NtcError(f"{path}: no MatMul/Gemm/Conv with constant weights to quantize")
    out_dir = Path(out_dir)
    messages = []
    key = {"model_sha256": sha256_file(path), "data_sha256": feeds_hash(feeds), "holdout_sha256": feeds_hash(held),
           "precision": precision, "method": method, "target_cosine": target_cosine,
           "settings": {"num_bins": NUM_BINS, "percentile": PERCENTILE,
                        "weights": "per-channel max, int8 adjacent-K pairs <= 128",  # older caches recompute
                        "entropy": "kl, floored at mse",  # scales cached before the floor are recomputed
                        "plugin_sha256": sha256_file(plugin_onnx) if plugin_onnx is not None else None},
           "versions": cache.tool_versions()}
    cpath = cache.cache_path(out_dir, precision)
    old = cache.read(cpath)
    if old is not None and old.get("key") == key:
        body = {k: v for k, v in old.items() if k not in ("format", "key")}
        reused, cache_message = True, f"calibration cache hit: reusing {cpath} (same model, data, method, tools)"
    else:
        if old is None:
            cache_message = f"calibration cache miss: no cache at {cpath}; computing"
        else:
            cache_message = f"calibration cache stale: {'; '.join(cache.changes(old.get('key', {}), key))}; recomputing"
        _say(log, messages, cache_message)
        skip = non_float_tensors(model) if plugin_model else set()
        extra = [t for t in plugin_boundaries(plugin_model) if t in graph_tensors(model) and t not in skip] \
            if plugin_model else []
        body = _compute(model, layers, feeds, held, precision, method, target_cosine, extra)
        reused = False
    if reused:
        _say(log, messages, cache_message)
    active = [l for l in layers if l.node in body["quantized_layers"]]
    act_scales = {t: a["scale"] for t, a in body["activations"].items()}
    w_scales = {w: np.asarray(r["scales"], np.float32) for w, r in body["weights"].items()}
    qmodel = insert_qdq(model, active, act_scales, w_scales, precision)
    qmodel.doc_string = f"ntc-export {precision} Q/DQ ({method} calibration) of {path.name}"
    out_path = out_dir / f"model.{precision}.onnx"
    _save_model(qmodel, out_path)
    plugin_path = None
    if plugin_model is not None:
        pmodel, body["plugin"] = apply_to_plugin_graph(plugin_model, {t: body["activations"][t] for t in act_scales},
                                                       body["weights"], precision)
        plugin_path = out_dir / f"model.{precision}.plugin.onnx"
        _save_model(pmodel, plugin_path)
        for t in body["plugin"]["plugin_io_missing"]:
            _say(log, messages, f"plugin tensor {t!r} has no counterpart in the decomposed graph: no scale carried")
    if not reused:
        cache.write(cpath, key, body)
    for k in body["kept_high_precision"]:
        _say(log, messages, f"kept {k['layer']} in high precision: {k['reason']}")
    return CalibrationResult(
        precision=precision, method=method, model_path=out_path, cache_path=cpath, reused=reused,
        cache_message=cache_message, activations=body["activations"], weights=body["weights"],
        quantized_layers=body["quantized_layers"], kept_high_precision=body["kept_high_precision"],
        sensitivity=body["sensitivity"], fidelity=body["fidelity"],
        evaluated_on=f"{'held-out' if held is not None else 'calibration'} {kind}",
        plugin=body.get("plugin"), plugin_model_path=plugin_path, messages=messages)
