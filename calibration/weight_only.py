"""Weight-only INT4 (AWQ) and NVFP4 calibration: fp32 ONNX + real data -> a graph in the engine's float type (fp16)
whose MatMul/Gemm weights are blocked DequantizeLinear chains (blocked_dq.py), with activations left in fp16.

Every MatMul/Gemm with a 2-D constant weight is quantized; Conv and everything else keeps fp16. AWQ searches each
layer's pre-scale and clipping on its own calibration activations (awq.py); layers are then kept in fp16 by
sensitivity until the output cosine meets `target_cosine`, as for INT8/FP8. Fidelity is measured against the fp32
model: int4 by ONNX Runtime running the written graph (its CPU DequantizeLinear runs blocked INT4); nvfp4 by ONNX
Runtime running the reference form, whose weights are the numpy two-level dequantization (no FLOAT4E2M1 kernel).
"""

import numpy as np
import onnx

from ..backend.onnx.inspect import constant_bytes
from ..evaluate.feeds import FeedGroups, feed_groups, grouped
from ..util.errors import NtcError
from .awq import awq
from .blocked_dq import QuantizedWeight, float_weight_types, insert_weight_dq
from .evaluation import Evaluator, run_model
from .int4 import DEFAULT_BLOCK, int4_codes, int4_fake_quant, int4_scales
from .nvfp4 import NVFP4_BLOCK, nvfp4_fake_quant, nvfp4_quantize
from .qdq import Layer, constants
from .selection import keep_layers, sensitivity_of
from .stats import batches, session_with_outputs

WEIGHT_ONLY = ("int4", "nvfp4")
FIDELITY_RUNTIME = {
    "int4": "ONNX Runtime CPU on the written graph (blocked INT4 DequantizeLinear, opset 21)",
    "nvfp4": "ONNX Runtime CPU on the reference graph: weights from the numpy two-level dequantization "
             "(ONNX Runtime has no FLOAT4E2M1 DequantizeLinear kernel)"}
WEIGHT_OPS = ("MatMul", "Gemm")


def check_block(precision: str, block: int | None) -> int:
    """The block size: int4 any power of two from 16 (default 128); nvfp4 is fixed at 16 by the format."""
    if precision == "nvfp4":
        if block not in (None, NVFP4_BLOCK):
            raise NtcError(f"nvfp4 blocks are {NVFP4_BLOCK} values by definition; got block size {block}")
        return NVFP4_BLOCK
    block = DEFAULT_BLOCK if block is None else int(block)
    if block < 16 or block & (block - 1):
        raise NtcError(f"int4 block size {block} must be a power of two >= 16 (TensorRT takes 16 to 128)")
    return block


def weight_layers(layers: list[Layer], consts: dict) -> list[Layer]:
    """The MatMul/Gemm layers (2-D weights) a weight-only format takes; Conv stays in float."""
    return [layer for layer in layers if layer.op_type in WEIGHT_OPS and consts[layer.weight].ndim == 2]


def k_major(weight: np.ndarray, layer: Layer) -> np.ndarray:
    """The weight as [K, N] (input channels first): MatMul [K, N] as is, Gemm transB [N, K] transposed."""
    return weight if layer.axis == 1 else weight.T


def layer_inputs(model: onnx.ModelProto, layers: list[Layer], feeds, max_rows: int = 4096) -> dict[str, np.ndarray]:
    """activation tensor -> [rows, K] float32 rows it takes on `feeds` (evenly strided, up to `max_rows`)."""
    names = list(dict.fromkeys(layer.activation for layer in layers))
    sess = session_with_outputs(model, names)
    parts = {n: [] for n in names}
    for x in batches(feeds, 8):
        for name, value in zip(names, sess.run(names, x)):
            parts[name].append(value.reshape(-1, value.shape[-1]))
    out = {}
    for name, chunks in parts.items():
        rows = np.concatenate(chunks)
        out[name] = np.ascontiguousarray(rows[:: max(1, len(rows) // max_rows)][:max_rows], np.float32)
    return out


def _fake_quant(precision: str, block: int, dtype):
    if precision == "int4":
        return lambda w, clip: int4_fake_quant(w, block, dtype, clip).astype(np.float32)
    return lambda w, clip: nvfp4_fake_quant(w, block, dtype, clip).astype(np.float32)


def quantize_layer(layer: Layer, weight: np.ndarray, x: np.ndarray, precision: str, block: int, dtype
                   ) -> tuple[QuantizedWeight, dict]:
    """AWQ-search one layer and encode it: (its quantized weight, a record of the search)."""
    w = k_major(np.asarray(weight, np.float32), layer)
    choice = awq(x, w, _fake_quant(precision, block, dtype), block)
    scaled = w if choice.pre_scale is None else w * choice.pre_scale[:, None].astype(np.float32)
    pre = None if choice.pre_scale is None else (1.0 / choice.pre_scale).astype(dtype)
    if precision == "int4":
        scales = int4_scales(scaled, block, dtype, choice.clip)
        q = QuantizedWeight("int4", layer, block, int4_codes(scaled, scales, block), scales, None, pre, dtype)
    else:
        values, scales, global_scale = nvfp4_quantize(scaled, block, choice.clip)
        q = QuantizedWeight("nvfp4", layer, block, values, scales, global_scale, pre, dtype)
    record = {"alpha": choice.alpha, "block": block, "k_axis": q.k_axis, "mean_clip": float(choice.clip.mean()),
              "search_output_mse": choice.output_mse, "search_output_mse_plain": choice.output_mse_plain}
    return q, record


def typed_feeds(feeds, model: onnx.ModelProto):
    """`feeds` with float inputs cast to the types `model` declares (an fp16 graph takes fp16 tokens)."""
    types = {i.name: onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type) for i in model.graph.input}

    def cast(group: dict) -> dict:
        return {k: v.astype(types[k]) if np.issubdtype(v.dtype, np.floating) and k in types else v
                for k, v in group.items()}

    if isinstance(feeds, FeedGroups):
        return grouped([(idx, cast(group)) for idx, group in feed_groups(feeds)])
    return cast(feeds)


def quantize_weight_only(fp32: onnx.ModelProto, low: onnx.ModelProto, layers: list[Layer], feeds, holdout,
                         precision: str, block: int, target_cosine: float | None) -> dict:
    """Search, encode, select: the weight-only graph of `low` (the fp16 graph of `fp32`, same node names), its
    reference form where ONNX Runtime cannot run it (nvfp4; else None) and the record {quantized_layers,
    kept_high_precision, sensitivity, fidelity, fidelity_runtime, weights, weight_bytes}."""
    consts = constants(fp32.graph)
    layers = weight_layers(layers, consts)
    types = float_weight_types(low, layers)
    layers = [layer for layer in layers if layer.weight in types]
    if not layers:
        raise NtcError(f"no MatMul/Gemm with a 2-D constant weight to quantize to {precision}")
    inputs = layer_inputs(fp32, layers, feeds)
    quantized, records = {}, {}
    for layer in layers:
        quantized[layer.node], records[layer.node] = quantize_layer(
            layer, consts[layer.weight], inputs[layer.activation], precision, block, types[layer.weight])
    data = holdout if holdout is not None else feeds
    reference = run_model(fp32, data)
    evaluator = Evaluator(fp32, typed_feeds(data, low), reference)
    reference_form = precision == "nvfp4"

    def make(active):
        return insert_weight_dq(low, [quantized[layer.node] for layer in active], reference=reference_form)

    sensitivity = sensitivity_of(layers, make, evaluator) if holdout is not None else {}

    def measure_sensitivity() -> dict:
        if not sensitivity:
            sensitivity.update(sensitivity_of(layers, make, evaluator))
        return sensitivity

    active, kept, fid = keep_layers(layers, make, evaluator, measure_sensitivity, target_cosine)
    model = insert_weight_dq(low, [quantized[layer.node] for layer in active])
    reference = insert_weight_dq(low, [quantized[layer.node] for layer in active], reference=True) \
        if reference_form else None
    return {"model": model, "reference_model": reference, "quantized_layers": [layer.node for layer in active],
            "kept_high_precision": kept, "sensitivity": sensitivity, "fidelity": fid,
            "fidelity_runtime": FIDELITY_RUNTIME[precision],
            "weights": {quantized[layer.node].layer.weight: records[layer.node] for layer in active},
            "weight_bytes": {"fp16": constant_bytes(low), precision: constant_bytes(model)}}
