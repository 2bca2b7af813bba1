"""Decode cost of a route from payload (or picture) to tokens: FLOPs and bytes moved per image counted by onnx-tool on
the route's ONNX graphs, ONNX Runtime CPU p50 (1 thread and all threads, batch 1 and 16), and per target a roofline
lower bound (evaluate/roofline.py) — a bound, never shown as a measurement."""

import hashlib
import tempfile
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx

from ..util.errors import NtcError

FOUR_BIT_TYPES = ("int4", "uint4", "float4_e2m1fn")  # numpy (ml_dtypes) names of the types ONNX packs by twos
TIMING_BUDGET_S = 0.3  # timed runs per (threads, batch) configuration of a route, all its graphs together
_COSTED: dict[str, tuple[dict, dict]] = {}  # route digest -> (counts, timings): a route shared by rows is costed once


@dataclass
class DecodeGraph:
    """One ONNX graph a decode route runs, with its feeds for one image (batch 1)."""

    name: str
    model: onnx.ModelProto
    feeds: dict[str, np.ndarray] = field(default_factory=dict)


# ---- counting (onnx-tool) ------------------------------------------------------------------------------------------

def counted_by() -> str:
    """The counting library and its version, as rows record it."""
    import onnx_tool

    return f"onnx-tool {onnx_tool.VERSION}"


@lru_cache(maxsize=1)
def _register_nodes() -> None:
    """Teach onnx-tool (through its NODE_REGISTRY) what it cannot count or infer on our graphs; once per process."""
    from onnx_tool import node as ot

    from ..codec.formats import CHANNELS
    from ..ops.contract import node_fields

    class ShapeNode(ot.ShapeNode):
        """ONNX Shape with its opset-15 `start`/`end` attributes (onnx-tool 1.0 ignores them and returns the whole
        shape, which breaks every torch.export graph's size arithmetic)."""

        def value_infer(self, intensors, outtensors):
            shape = intensors[0].get_shape()
            sliced = shape[self.attr.get("start", 0):self.attr.get("end", len(shape))]
            outtensors[0].update_tensor(np.array(sliced, dtype=np.int64))

    class BcDecodeNode(ot.Node):
        """ntc::BcDecode (ops/bc_decode/contract.py): blocks INT32 [B, by, bx, W] -> texels nchw [B, C, 4by, 4bx] or
        tokens [B, 16 by bx, C]. onnx-tool has no entry for it (it would count 0 MACs); the decode is integer bit
        work (endpoints, palette, index reads) plus one float conversion per texel value (UNORM value / 255, or the
        BC6H half widened), so it counts one MAC per output value, as onnx-tool counts an elementwise Mul."""

        def shape_infer(self, intensors, outtensors):
            fields = node_fields(self.proto)
            b, by, bx, _ = intensors[0].get_shape()
            channels = CHANNELS[fields["format"]]
            nchw = fields["layout"] == "nchw"
            outtensors[0].update_shape([b, channels, 4 * by, 4 * bx] if nchw else [b, 16 * by * bx, channels])
            outtensors[0].update_dtype(np.float16 if fields["dtype"] == "float16" else np.float32)

        def value_infer(self, intensors, outtensors):
            self.shape_infer(intensors, outtensors)  # texel values never steer a shape

        def profile(self, intensors, outtensors):
            return [float(np.prod(outtensors[0].get_shape())) * ot.MUL_MACS, 0]

    class AttentionNode(ot.Node):
        """ONNX Attention (opset 23; what the "native" window-attention lowering exports): Q [B, Tq, Hq*hd] with
        `q_num_heads` (or [B, Hq, Tq, hd]), K and V likewise, optional additive attn_mask; one output. onnx-tool has
        no entry for it; it is counted as the decomposed lowering's ops are: q * scale, the Q K^T MatMul, the mask
        Add, Softmax (Exp + Div per score) and the scores x V MatMul."""

        def _dims(self, intensors):
            if any(self.proto.output[1:]) or len(self.proto.input) > 4 or self.attr.get("is_causal") \
                    or self.attr.get("softcap"):
                raise NotImplementedError("Attention with a KV cache, causal masking or softcap")
            q, v = intensors[0].get_shape(), intensors[2].get_shape()
            if len(q) == 4:
                return q[0], q[1], q[2], q[3], intensors[1].get_shape()[2], v[3], True
            heads, kv_heads = self.attr["q_num_heads"], self.attr["kv_num_heads"]
            return q[0], heads, q[1], q[2] // heads, intensors[1].get_shape()[1], v[2] // kv_heads, False

        def shape_infer(self, intensors, outtensors):
            b, heads, tq, _, _, hd_v, four_d = self._dims(intensors)
            outtensors[0].update_shape([b, heads, tq, hd_v] if four_d else [b, tq, heads * hd_v])
            outtensors[0].update_dtype(intensors[0].dtype)

        def value_infer(self, intensors, outtensors):
            self.shape_infer(intensors, outtensors)  # attention values never steer a shape

        def profile(self, intensors, outtensors):
            b, heads, tq, hd, tk, hd_v, _ = self._dims(intensors)
            scores = b * heads * tq * tk
            masked = len(intensors) > 3 and bool(self.proto.input[3])
            return [float(b * heads * tq * hd * ot.MUL_MACS + scores * hd + scores * ot.ADD_MACS * masked
                          + scores * (ot.EXP_MACS + ot.DIV_MACS) + scores * hd_v), 0]

    from onnx_tool.utils import NODE_REGISTRY

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # onnx-tool warns that ShapeNode is replaced: that is the point
        NODE_REGISTRY.register(ShapeNode)
        NODE_REGISTRY.register(BcDecodeNode)
        NODE_REGISTRY.register(AttentionNode)


def _check_feeds(graph: DecodeGraph) -> None:
    """NtcError unless the feeds cover every graph input with one image."""
    inits = {i.name for i in graph.model.graph.initializer}
    needed = [i.name for i in graph.model.graph.input if i.name not in inits]
    missing = [n for n in needed if n not in graph.feeds]
    if missing:
        raise NtcError(f"decode graph {graph.name!r} needs input(s) {', '.join(missing)} that its feeds lack")
    several = [n for n in needed if np.ndim(graph.feeds[n]) == 0 or len(graph.feeds[n]) != 1]
    if several:
        raise NtcError(f"decode graph {graph.name!r}: feed(s) {', '.join(several)} must hold one image (batch 1)")


def _profiled(graph: DecodeGraph):
    """onnx-tool's graph of `graph`, shapes inferred from its feeds and every node profiled."""
    import onnx_tool
    from onnx_tool.utils import NODE_REGISTRY

    _register_nodes()
    _check_feeds(graph)
    unknown = sorted({f"{n.domain or 'ai.onnx'}::{n.op_type}" for n in graph.model.graph.node
                      if NODE_REGISTRY.get(n.op_type + "Node") is None})
    if unknown:  # onnx-tool would count them as 0 MACs and warn: refuse instead
        raise NtcError(f"decode graph {graph.name!r}: onnx-tool cannot count {', '.join(unknown)}; register a "
                       "profiler for it in evaluate/decode_cost.py")
    try:
        counted = onnx_tool.Model(graph.model).graph
        counted.shape_infer({k: np.asarray(v) for k, v in graph.feeds.items()})
        counted.profile()
    except Exception as e:  # onnx-tool raises bare ValueError/AssertionError/NotImplementedError
        raise NtcError(f"onnx-tool cannot count decode graph {graph.name!r}: {type(e).__name__}: "
                       f"{str(e).strip()[:200]}") from None
    return counted


def op_flops(graph: DecodeGraph) -> dict[str, int]:
    """FLOPs of one image through `graph` per ONNX op type (2 x onnx-tool's MACs, as graph_counts counts them)."""
    out: dict[str, float] = {}
    for node in _profiled(graph).nodemap.values():
        out[node.op_type] = out.get(node.op_type, 0.0) + node.macs[0]
    return {op: 2 * int(round(macs)) for op, macs in out.items()}


def stored_bytes(x: np.ndarray) -> int:
    """Bytes of an array as ONNX stores it: 4-bit types (INT4, UINT4, FP4; one byte per value in numpy) two to a
    byte."""
    bits = 4 if x.dtype.name in FOUR_BIT_TYPES else 8 * x.dtype.itemsize
    return -(-x.size * bits // 8)


def _graph_counts(graph: DecodeGraph) -> dict:
    counted = _profiled(graph)
    kept = set(counted.initials) | set(counted.output)
    inputs = [n for n in counted.input if n and n not in kept]  # onnx-tool lists an omitted optional input as ""
    compulsory = sum(counted.tensormap[n].get_memsize() for n in kept) + sum(
        stored_bytes(np.asarray(graph.feeds[n])) for n in inputs)
    return {"flops": 2 * int(round(counted.macs[0])), "bytes_moved": int(counted.memory),
            "bytes_compulsory": int(compulsory)}


def graph_counts(graphs: list[DecodeGraph]) -> dict:
    """{"flops", "bytes_moved", "bytes_compulsory"} of one image through every graph of a route (summed), at the
    static shapes of their batch-1 feeds, as onnx-tool counts them.

    flops: 2 x onnx-tool's forward MACs (onnx-tool's own FLOPs figure). A MatMul/Gemm/Conv MAC is one multiply-add
    (2 FLOPs; a Gemm's bias adds one MAC per output); an elementwise op counts per output value by onnx-tool's
    instruction weights (Add/Mul/compare 1, Div 4, Sqrt 24, Exp 32, Log 43; Erf 0), doubled like every MAC; data
    movement (Reshape, Transpose, Gather, Slice, Concat, Cast) counts 0.
    bytes_moved: onnx-tool's memory figure: the bytes of every weight (initializer, counted once) plus the bytes of
    every node output (each tensor written once, at its own type). Graph inputs and the re-reads of intermediate
    tensors are not counted, and nothing is fused away: the writes of an unfused run plus one read of the weights.
    bytes_compulsory: the weights once plus each graph's inputs (as stored: 4-bit values two to a byte) and outputs,
    the traffic no fusion removes (what a roofline lower bound may assume).
    """
    totals = {"flops": 0, "bytes_moved": 0, "bytes_compulsory": 0}
    for graph in graphs:
        for key, value in _graph_counts(graph).items():
            totals[key] += value
    return totals


# ---- timing (ONNX Runtime, CPU) ------------------------------------------------------------------------------------

def timing_key(threads: int, batch: int) -> str:
    """"t1_b16": 1 intra-op thread, batch 16; "tall_b1": ORT's default thread count (all cores), batch 1."""
    return f"t{threads or 'all'}_b{batch}"


def _ort_feeds(feeds: dict[str, np.ndarray]) -> dict:
    """Feeds as ONNX Runtime takes them: FP8/INT4 arrays (ml_dtypes, numpy kind "V") as OrtValues of their ONNX
    type, the rest as they are."""
    if all(np.asarray(v).dtype.kind in "biuf" for v in feeds.values()):
        return feeds
    from .onnx_types import ort_inputs

    return ort_inputs(feeds)


def batch_axis_free(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose graph inputs and outputs take any batch (axis 0 symbolic): a route built for one image, timed at
    batch 16. Inner shapes are left to the runtime (a graph that fixes its batch inside still refuses)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for value in [*out.graph.input, *out.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims) and dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    del out.graph.value_info[:]  # inferred for batch 1: ORT infers its own
    return out


def graph_timings(graphs: list[DecodeGraph], batches=(1, 16), threads=(1, 0),
                  budget_s: float = TIMING_BUDGET_S) -> dict:
    """ONNX Runtime CPU p50 in ms per call (one call = `batch` images through every graph of the route, in order; the
    sum of each graph's p50), keyed by `timing_key(threads, batch)` for each thread count (1: one intra-op thread;
    0: ORT's default, all cores) and batch size. Each configuration gets about `budget_s` of timed runs after one
    warm-up run (at least 3 timed runs per graph). Feeds are the batch-1 feeds tiled to the batch."""
    from ..backend.onnx.inspect import has_custom_ops
    from ..backend.onnxrt.runner import OrtRunner
    from .latency import batch_feeds, percentiles, time_calls

    if not graphs:
        raise NtcError("a decode route needs at least one graph to time")
    for graph in graphs:
        _check_feeds(graph)
    out = {timing_key(t, b): 0.0 for t in threads for b in batches}
    with tempfile.TemporaryDirectory(prefix="ntc-decode-cost-") as tmp:
        for i, graph in enumerate(graphs):
            path = Path(tmp) / f"{i}.onnx"
            onnx.save(batch_axis_free(graph.model), str(path))
            custom = has_custom_ops(path)
            for t in threads:
                runner = OrtRunner(path, providers=["CPUExecutionProvider"], custom_ops=custom, threads=t or None,
                                   fused_qdq=True)
                for b in batches:
                    feeds = _ort_feeds(batch_feeds({n: graph.feeds[n] for n in runner.input_names}, int(b)))
                    try:
                        # one warm-up run: a slow graph's batch 16 at one thread takes a good part of a second
                        times = time_calls(lambda feeds=feeds: runner.session.run(None, feeds), 200,
                                           budget_s / len(graphs), warmup=1)
                    except Exception as e:  # ORT raises its own types; the first line names the problem
                        raise NtcError(f"decode graph {graph.name!r} does not run at batch {b} in ONNX Runtime: "
                                       f"{str(e).strip().splitlines()[0][:300]}") from None
                    out[timing_key(t, b)] += percentiles(times)["p50_ms"]
    return out


# ---- the graphs of a trained compressor ----------------------------------------------------------------------------

def compressor_graphs(module, patch_tokens_1, exported: dict | None = None) -> list[DecodeGraph]:
    """The decode route of a trained token compressor for one image (patch tokens [1, h, w, D]), in the order the
    host decoder runs it: the decode-side graphs it ships beside its decoder (`module.decode_graph_names`, e.g. the
    hyperprior's "hyper_synthesis", whose scales steer the range decoder), then the deployable decoder ("decoder"),
    each exported fp32 (or taken from `exported`: name -> the fp32 ONNX model a build already holds) and fed from
    that image by its own `prepare_inputs`."""
    from ..backend.onnx.export import to_onnx_fp32

    if not getattr(module, "is_compressor", False):
        raise NtcError(f"{getattr(module, 'arch', type(module).__name__)} is not a token compressor: it has no "
                       "decode route")
    if len(patch_tokens_1) != 1:
        raise NtcError(f"a decode route is built from one image's tokens, got {len(patch_tokens_1)} images")
    extras = module.extra_graphs()
    unknown = [n for n in module.decode_graph_names if n not in extras]
    if unknown:
        raise NtcError(f"{module.arch}: decode graph(s) {', '.join(unknown)} are not among its extra graphs "
                       f"({', '.join(extras) or 'none'})")
    parts = [(name, extras[name].eval()) for name in module.decode_graph_names] + [("decoder", module.eval())]
    exported = exported or {}
    return [DecodeGraph(name, exported[name] if name in exported else to_onnx_fp32(part),
                        {k: np.asarray(v) for k, v in part.prepare_inputs(patch_tokens_1).items()})
            for name, part in parts]


# ---- the row's cost ------------------------------------------------------------------------------------------------

def _route_digest(graphs: list[DecodeGraph], batches, threads) -> str:
    h = hashlib.sha256(f"{list(batches)}|{list(threads)}".encode())
    for graph in graphs:
        h.update(graph.model.SerializeToString(deterministic=True))
        for name in sorted(graph.feeds):
            h.update(name.encode())
            h.update(np.ascontiguousarray(graph.feeds[name]).tobytes())
    return h.hexdigest()


def route_cost(graphs: list[DecodeGraph], host_ms: float | None = None, targets=None, batches=(1, 16),
               threads=(1, 0)) -> dict:
    """The decode cost a rate-distortion row carries: {"flops", "bytes_moved", "bytes_compulsory"} per image
    (graph_counts), "p50_ms" per call (graph_timings; with `host_ms`, a measured host step per image such as picture
    decoding, batch x host_ms is added to each and "host_ms" names it), "bound_ms" per target (roofline.bound_ms of
    the FLOPs and the compulsory bytes per image: a lower bound, not a measurement; the unfused bytes_moved would not
    bound a fused engine), the graph names, the counting library and the CPU timed on.
    A route already costed in this process (same graphs and feeds) is not counted or timed again."""
    from . import roofline
    from .latency import cpu_model

    key = _route_digest(graphs, batches, threads)
    if key not in _COSTED:
        _COSTED[key] = graph_counts(graphs), graph_timings(graphs, batches, threads)
    counts, timings = _COSTED[key]
    p50 = {timing_key(t, b): timings[timing_key(t, b)] + (host_ms or 0.0) * b for t in threads for b in batches}
    cost = {**counts, "p50_ms": p50,
            "bound_ms": {t: roofline.bound_ms(t, counts["flops"], counts["bytes_compulsory"])
                         for t in (targets or roofline.ROOFS)},
            "graphs": [g.name for g in graphs], "counted_by": counted_by(), "device": cpu_model()}
    if host_ms is not None:
        cost["host_ms"] = float(host_ms)
    return cost
