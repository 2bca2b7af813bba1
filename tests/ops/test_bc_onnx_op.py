"""ntc::BcDecode v1: PyTorch reference, ONNX export node, ONNX Runtime op and standard-op decomposition, all against
bcdec (imagecodecs), a decoder independent of the project's C++ host decoder, on random blocks: BC4, BC5, BC6H, BC7
bit-exact, BC1 within one level (DESIGN.md section 5)."""

import io
import warnings

import imagecodecs
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from ntc_export.codec.decode import int32_to_blocks
from ntc_export.codec.formats import CHANNELS, FORMATS, WORDS
from ntc_export.ops.bc_decode import ort_op
from ntc_export.ops.bc_decode.decompose import decompose_bc_decode
from ntc_export.ops.bc_decode.torch_op import bc_decode_op, bc_decode_reference
from ntc_export.ops.ort_registry import register_custom_ops
from ntc_export.util.errors import NtcError
from onnx import TensorProto, helper

LAYOUTS = ("nchw", "tokens")
DTYPES = ("float32", "float16")
BCDEC_CODES = {"bc1": 1, "bc4": 4, "bc5": 5, "bc6h_uf16": 6, "bc6h_sf16": -6, "bc7": 7}


def random_blocks(fmt: str, shape, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-(2**31), 2**31, size=(*shape, WORDS[fmt]), dtype=np.int64).astype(np.int32)


def bcdec_image(raw: np.ndarray, fmt: str) -> np.ndarray:
    """uint8 blocks [by, bx, bytes] -> bcdec's image [4by, 4bx, C] (channels R, G, B, A in order)."""
    by, bx, _ = raw.shape
    shape = (4 * by, 4 * bx) + (() if CHANNELS[fmt] == 1 else (CHANNELS[fmt],))
    img = imagecodecs.bcn_decode(np.ascontiguousarray(raw).tobytes(), BCDEC_CODES[fmt], shape=shape)
    return img.reshape(4 * by, 4 * bx, CHANNELS[fmt])


def expected(blocks: np.ndarray, fmt: str, layout: str, dtype: str) -> np.ndarray:
    """The contract, built from bcdec's images: UNORM bytes / 255 in fp32 (then fp16), BC6H halves widened."""
    b, by, bx, _ = blocks.shape
    raw = int32_to_blocks(blocks)
    img = np.stack([bcdec_image(raw[i], fmt) for i in range(b)])
    if fmt.startswith("bc6h"):
        val = img.astype(np.float32)
    else:
        val = img.astype(np.float32) / np.float32(255)
    val = val.transpose(0, 3, 1, 2) if layout == "nchw" else val.reshape(b, -1, CHANNELS[fmt])
    return np.ascontiguousarray(val.astype(np.float16) if dtype == "float16" else val)


def assert_matches_bcdec(got: np.ndarray, want: np.ndarray, fmt: str, what) -> None:
    """Bit-exact, except two documented differences: BC1 colour within one level of bcdec (alpha exact), and BC6H
    signed values truncating to zero, which the specification keeps as -0 where bcdec returns +0."""
    assert got.dtype == want.dtype and got.shape == want.shape, (what, got.dtype, got.shape, want.shape)
    if fmt == "bc1":
        levels = np.rint(got.astype(np.float64) * 255)
        assert same_bits(got, (levels.astype(np.float32) / np.float32(255)).astype(got.dtype)), what  # exact k/255
        diff = np.abs(levels - np.rint(want.astype(np.float64) * 255))
        alpha = (slice(None), 3) if got.ndim == 4 else (Ellipsis, 3)
        assert diff.max() <= 1 and not diff[alpha].any(), (what, diff.max())
        return
    if fmt == "bc6h_sf16":
        signed_zero = (got == 0) & (want == 0) & np.signbit(got) & ~np.signbit(want)
        got = np.where(signed_zero, want, got)
        assert signed_zero.mean() < 1e-3, what
    assert same_bits(got, want), what


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.ascontiguousarray(a).tobytes() == b.tobytes()


def node_model(fmt: str, layout: str, dtype: str) -> onnx.ModelProto:
    node = helper.make_node("BcDecode", ["blocks"], ["out"], domain="ntc", name="bc_decode", format=fmt,
                            layout=layout, dtype=dtype, plugin_version="1")
    rank = 4 if layout == "nchw" else 3
    elem = TensorProto.FLOAT if dtype == "float32" else TensorProto.FLOAT16
    graph = helper.make_graph(
        [node], "bc", [helper.make_tensor_value_info("blocks", TensorProto.INT32, ["b", "by", "bx", WORDS[fmt]])],
        [helper.make_tensor_value_info("out", elem, [f"d{i}" for i in range(rank)])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ntc", 1)])


@pytest.mark.parametrize("fmt", FORMATS)
def test_torch_reference_matches_bcdec(fmt):
    blocks = random_blocks(fmt, (2, 5, 6), seed=FORMATS.index(fmt))
    for layout in LAYOUTS:
        for dtype in DTYPES:
            got = bc_decode_reference(torch.from_numpy(blocks), fmt, layout, dtype).numpy()
            assert_matches_bcdec(got, expected(blocks, fmt, layout, dtype), fmt, (layout, dtype))


def test_torch_bc4_bc5_many_blocks():
    # The pure-torch BC4/BC5 path over 10^4 random blocks each.
    for fmt in ("bc4", "bc5"):
        blocks = random_blocks(fmt, (1, 100, 100), seed=7)
        got = bc_decode_reference(torch.from_numpy(blocks), fmt, "tokens", "float32").numpy()
        assert same_bits(got, expected(blocks, fmt, "tokens", "float32"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_ort_op_matches_bcdec(fmt):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    register_custom_ops(so)
    blocks = random_blocks(fmt, (2, 50, 100), seed=100 + FORMATS.index(fmt))  # 10^4 blocks
    for layout in LAYOUTS:
        for dtype in DTYPES:
            session = ort.InferenceSession(ort_op.prepare(node_model(fmt, layout, dtype)).SerializeToString(), so,
                                           providers=["CPUExecutionProvider"])
            got = session.run(None, {"blocks": blocks})[0]
            assert_matches_bcdec(got, expected(blocks, fmt, layout, dtype), fmt, (layout, dtype))


@pytest.mark.parametrize("fmt", ("bc4", "bc5"))
def test_decomposition_matches_bcdec(fmt):
    blocks = random_blocks(fmt, (2, 50, 100), seed=200 + FORMATS.index(fmt))
    for layout in LAYOUTS:
        for dtype in DTYPES:
            model = decompose_bc_decode(node_model(fmt, layout, dtype))
            onnx.checker.check_model(model)
            assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
            assert all(o.domain != "ntc" for o in model.opset_import)
            session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            got = session.run(None, {"blocks": blocks})[0]
            assert same_bits(got, expected(blocks, fmt, layout, dtype)), (fmt, layout, dtype)


def test_decomposition_leaves_other_formats_and_checks_opset():
    model = node_model("bc7", "tokens", "float32")
    assert decompose_bc_decode(model) is model
    old = node_model("bc4", "tokens", "float32")
    old.opset_import[0].version = 17
    with pytest.raises(NtcError, match="opset"):
        decompose_bc_decode(old)


class _Decoder(torch.nn.Module):
    def __init__(self, fmt, layout, dtype):
        super().__init__()
        self.fmt, self.layout, self.dtype = fmt, layout, dtype

    def forward(self, blocks):
        return bc_decode_op(blocks, self.fmt, self.layout, self.dtype) * 2.0


def test_export_emits_contract_node_and_ort_matches_torch():
    module = _Decoder("bc5", "nchw", "float32")
    buf = io.BytesIO()
    example = torch.from_numpy(random_blocks("bc5", (1, 2, 3), seed=3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), buf, input_names=["blocks"], output_names=["out"], opset_version=18,
                          dynamo=False, dynamic_axes={"blocks": {0: "b", 1: "by", 2: "bx"}})
    model = onnx.load_from_string(buf.getvalue())
    (node,) = [n for n in model.graph.node if n.op_type == "BcDecode"]
    attrs = {a.name: a.s.decode() for a in node.attribute}
    assert node.domain == "ntc"
    assert attrs == {"format": "bc5", "layout": "nchw", "dtype": "float32", "plugin_version": "1"}
    blocks = random_blocks("bc5", (3, 4, 5), seed=4)  # another shape: the grid stays dynamic
    want = module(torch.from_numpy(blocks)).numpy()
    so = ort.SessionOptions()
    register_custom_ops(so)
    for m in (ort_op.prepare(model), decompose_bc_decode(model)):
        got = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(
            None, {"blocks": blocks})[0]
        assert same_bits(got, want)


def test_bad_blocks_raise():
    with pytest.raises(NtcError, match=r"\[B, by, bx, 4\]"):
        bc_decode_op(torch.zeros(1, 2, 2, 2, dtype=torch.int32), "bc5")
    with pytest.raises(NtcError, match="int32"):
        bc_decode_op(torch.zeros(1, 2, 2, 2, dtype=torch.int64), "bc4")
    with pytest.raises(NtcError, match="unknown format"):
        bc_decode_op(torch.zeros(1, 2, 2, 2, dtype=torch.int32), "bc3")
    with pytest.raises(NtcError, match="unknown layout"):
        bc_decode_op(torch.zeros(1, 2, 2, 2, dtype=torch.int32), "bc4", layout="nhwc")
