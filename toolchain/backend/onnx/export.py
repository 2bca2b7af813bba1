"""Export a token model to ONNX: `model.fp32.onnx` and a strongly typed `model.fp16.onnx`.

fp32: our own models through the torch.export-based exporter (backend/onnx/dynamo.py: the token grid's height and
width as two Dims, patch tokens [B, h, w, D]), opset 18, dynamic batch and grid axes, every grid in one graph; the
legacy TorchScript exporter stays available with `exporter="torchscript"` (no grid needs it); user torch.export programs (`.pt2`) through
backend/onnx/program.py. Checked and shape-inferred.
fp16: onnxconverter-common's float16 pass with overflow-prone islands (LayerNorm statistics, Softmax, reductions,
exp/log/pow) kept in fp32 behind Cast nodes, so every tensor has one declared type (what strongly typed
TensorRT networks need).
"""

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from ...ops.domain import STANDARD_DOMAINS
from ...ops.window_attention import export_context, finalize
from ...ops.window_attention.lowering import MODES as ATTENTION_MODES
from ...util.atomic import atomic_path
from ...util.errors import NtcError

OPSET = 18
INPUT_NAME = "tokens"
PRECISIONS = ("fp32", "fp16")
EXPORTERS = ("dynamo", "torchscript")  # torch.export-based (default) and the legacy TorchScript-based exporter
# Ops whose fp16 range or precision is unsafe: they run in fp32 inside the fp16 model.
FP16_KEEP_FP32 = [
    "LayerNormalization", "RMSNormalization", "Softmax", "LogSoftmax", "ReduceMean", "ReduceSum", "ReduceSumSquare",
    "ReduceL2", "Pow", "Sqrt", "Reciprocal", "Exp", "Log", "BcDecode", "Range", "Resize", "Min", "Max", "CumSum",
    "TopK",
]
_TWO_GB = 2**31
# Serialized fp32 exports by _export_key: a model exported again in one process (per subcommand, per test) is not
# traced again; torch.export + onnxscript take seconds where the legacy exporter took a fraction of one.
_EXPORTED: dict[str, bytes] = {}
_EXPORTED_KEEP = 32


def _save(model: onnx.ModelProto, dest: Path) -> None:
    """Atomic save; weights go to external data beside the file when the model exceeds protobuf's 2 GB."""
    large = model.ByteSize() > _TWO_GB
    with atomic_path(dest) as tmp:
        if large:
            onnx.save_model(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=dest.name + ".data")
        else:
            onnx.save_model(model, str(tmp))
    onnx.checker.check_model(str(dest))


def to_onnx_fp32(module: torch.nn.Module, example: tuple | None = None, attention: str = "decomposed",
                 exporter: str = "dynamo") -> onnx.ModelProto:
    """Trace `module` into an fp32 ONNX model with its dynamic axes; shapes inferred, checker clean. `exporter`:
    "dynamo" (torch.export, backend/onnx/dynamo.py) or "torchscript" (the legacy exporter, kept behind this flag;
    `example` only applies to it)."""
    if attention not in ATTENTION_MODES:
        raise NtcError(f"unknown attention lowering {attention!r}; choose from {', '.join(ATTENTION_MODES)}")
    if exporter not in EXPORTERS:
        raise NtcError(f"unknown exporter {exporter!r}; choose from {', '.join(EXPORTERS)}")
    if hasattr(module, "onnx_path"):  # a user's ONNX file: it is the fp32 model
        return onnx.shape_inference.infer_shapes(onnx.load(str(module.onnx_path)), strict_mode=False)
    if hasattr(module, "program"):  # a torch.export program: already traced, its own dynamic dims
        from .program import program_to_onnx

        model = program_to_onnx(module.program, list(module.input_names), list(module.output_names), OPSET)
        model.producer_name = "ntc-export"
        return onnx.shape_inference.infer_shapes(model, strict_mode=False)
    if exporter == "dynamo":
        from .dynamo import module_to_onnx

        key = _export_key(module, attention)
        if key not in _EXPORTED:
            with export_context(attention):
                model = finalize(module_to_onnx(module, OPSET), attention)
            model.producer_name = "ntc-export"
            _EXPORTED[key] = onnx.shape_inference.infer_shapes(model, strict_mode=False).SerializeToString()
            while len(_EXPORTED) > _EXPORTED_KEEP:
                _EXPORTED.pop(next(iter(_EXPORTED)))
        return onnx.ModelProto.FromString(_EXPORTED[key])  # a copy: callers edit what they get
    example = example if example is not None else module.example_inputs()
    example = example if isinstance(example, tuple) else (example,)
    input_names = list(getattr(module, "input_names", [INPUT_NAME]))
    names = list(getattr(module, "output_names", ["output"]))
    axes = module.dynamic_axes() if hasattr(module, "dynamic_axes") else {n: {0: "batch"} for n in input_names}
    context = export_context(attention)
    tmpdir = Path(os.environ.get("TMPDIR", "/tmp"))
    tmp = tmpdir / f"ntc-export-trace-{os.getpid()}-{id(module)}.onnx"
    try:
        with warnings.catch_warnings(), context, torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), example, str(tmp), input_names=input_names, output_names=names,
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
        model = onnx.load(str(tmp))
    except NtcError:
        raise
    except Exception as e:
        raise NtcError(f"ONNX export of {type(module).__name__} failed: {str(e).strip().splitlines()[0][:300]}") from e
    finally:
        tmp.unlink(missing_ok=True)
    model = finalize(model, attention)
    model.producer_name = "ntc-export"
    return onnx.shape_inference.infer_shapes(model, strict_mode=False)


def _export_key(module: torch.nn.Module, attention: str) -> str:
    """What a torch.export trace of `module` depends on: what shapes its trace (dynamo.shape_key), I/O names,
    weights."""
    from .dynamo import shape_key

    h = hashlib.sha256(f"{shape_key(module, attention)}|{list(getattr(module, 'input_names', []))}|"
                       f"{list(getattr(module, 'output_names', []))}".encode())
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(str(tensor.dtype).encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype
    return h.hexdigest()


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Strongly typed fp16 copy: fp16 I/O and weights, fp32 islands for FP16_KEEP_FP32 ops."""
    from onnxconverter_common import float16

    model = _initializer_identities_to_copies(onnx.ModelProto.FromString(model.SerializeToString()))
    _split_shared_constants(model)
    # Stale fp32 value_info makes the converter type Cast outputs wrongly; custom-op outputs keep theirs, since
    # shape inference cannot recover them and the converter needs them to cast around fp32 islands.
    custom_outputs = {o for n in model.graph.node if n.domain not in STANDARD_DOMAINS for o in n.output}
    kept = [v for v in model.graph.value_info if v.name in custom_outputs]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp16 = float16.convert_float_to_float16(model, keep_io_types=False, op_block_list=FP16_KEEP_FP32,
                                                node_block_list=_shape_nodes(model), check_fp16_ready=False)
    return onnx.shape_inference.infer_shapes(_cast_fp32_island_inputs(_retarget_float_casts(fp16)),
                                             strict_mode=False)


def _retarget_float_casts(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model's own Cast(to=FLOAT) nodes (a `.float()` in the module) whose output the converter typed float16:
    cast to float16, as declared (the converter keeps `to` and ORT/TensorRT refuse the mismatch); Casts it left in
    fp32 (shape computations, islands) keep theirs."""
    fp16_values = {v.name for v in model.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16}
    for node in model.graph.node:
        if node.op_type == "Cast" and node.output[0] in fp16_values:
            for attr in node.attribute:
                if attr.name == "to" and attr.i == onnx.TensorProto.FLOAT:
                    attr.i = onnx.TensorProto.FLOAT16
    return model


def _initializer_identities_to_copies(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace `Identity(initializer)` (the exporter's dedup of equal weights) with a copy of the initializer, so
    each copy takes the precision of the op that reads it (an fp32 island or an fp16 op)."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[node.input[0]])
            copy.name = node.output[0]
            graph.initializer.append(copy)
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    return model


def _split_shared_constants(model: onnx.ModelProto, max_elements: int = 64) -> None:
    """Give each reader of a small shared initializer its own copy (torch.export shares constants such as 1.0 between
    an fp32 island or a shape computation and fp16 ops): each copy then takes its reader's precision."""
    graph = model.graph
    small = {i.name: i for i in graph.initializer if int(np.prod(i.dims)) <= max_elements}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in set(node.input) & small.keys():
            readers[name] = readers.get(name, 0) + 1
    seen: dict[str, int] = {}
    for node in graph.node:
        for k, name in enumerate(node.input):
            if readers.get(name, 0) > 1:
                seen[name] = seen.get(name, 0) + 1
                if seen[name] > 1:  # the first reader keeps the original
                    copy = onnx.TensorProto()
                    copy.CopyFrom(small[name])
                    copy.name = node.input[k] = f"{name}__{seen[name]}"
                    graph.initializer.append(copy)


def _shape_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of nodes that only compute shapes (from Shape outputs and constants): they stay fp32/int, since a shape
    computed in float (a user's graph taking sqrt(N)) would round large token counts in fp16."""
    derived = set()
    constants = {i.name for i in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type == "Constant":
            constants.update(node.output)
            continue
        ins = [i for i in node.input if i]
        if node.op_type == "Shape" or (ins and all(i in derived or i in constants for i in ins)
                                       and any(i in derived for i in ins)):
            derived.update(node.output)
            names.append(node.name)
    return names


def _cast_fp32_island_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Insert the input Casts the converter forgets where an fp32-island node reads a graph output (fp16)."""
    graph = model.graph
    fp16_outputs = {o.name for o in graph.output if o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16}
    new_nodes, casts = [], {}
    for node in graph.node:
        if node.op_type in FP16_KEEP_FP32:
            for i, name in enumerate(node.input):
                if name in fp16_outputs and not (node.op_type == "ReduceMean" and i == 1):
                    if name not in casts:
                        casts[name] = f"{name}_as_fp32"
                        new_nodes.append(onnx.helper.make_node("Cast", [name], [casts[name]],
                                                               to=onnx.TensorProto.FLOAT, name=f"{name}_to_fp32"))
                    node.input[i] = casts[name]
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    return model


def exact_selection(module) -> bool:
    """Models whose outputs are exact selections of their inputs (ToMe, VisionZip): fp16 arithmetic would flip them."""
    return bool(getattr(module, "exact_selection", False))


def fp16_of(module, fp32: onnx.ModelProto) -> onnx.ModelProto:
    """The fp16 graph of `module`: strongly typed fp16, or for exact selections fp16 at the interface and fp32
    inside (fp16_io.py)."""
    if exact_selection(module):
        from .fp16_io import fp16_interface

        return fp16_interface(fp32)
    return to_fp16(fp32)


def export_model(module: torch.nn.Module, out_dir, precisions=PRECISIONS, attention: str = "decomposed",
                 name: str = "model", example: tuple | None = None, exporter: str = "dynamo") -> dict[str, Path]:
    """Write `<out_dir>/<name>.<precision>.onnx` for each precision; returns precision -> path."""
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise NtcError(f"export writes {'/'.join(PRECISIONS)}; {', '.join(bad)} come from `ntc-export calibrate`")
    out_dir = Path(out_dir)
    fp32 = to_onnx_fp32(module, example, attention, exporter)
    paths = {}
    arch = getattr(module, "arch", type(module).__name__)
    for precision in precisions:
        model = fp32 if precision == "fp32" else fp16_of(module, fp32)
        model.doc_string = f"ntc-export {precision} export of {arch}" + (
            " (fp16 interface, fp32 selection inside)" if precision == "fp16" and exact_selection(module) else "")
        path = out_dir / f"{name}.{precision}.onnx"
        _save(model, path)
        paths[precision] = path
    return paths
