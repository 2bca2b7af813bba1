"""Token quantization reference codecs: the routes that shrink fp16 ViT tokens 2x-4x with no training, as real payloads.

- `fp8`: FP8 E4M3FN values with one fp16 scale per token (amax / 448).
- `int8`: symmetric int8 with one fp16 scale per token (amax / 127), rounded half to even.
- `int4`: symmetric int4 in groups of 32 consecutive channels of a token, one fp16 scale per group (amax / 7), rounded
  half to even, two codes per byte (low nibble first, as ONNX packs INT4); a width that is not a multiple of 32 ends
  in a shorter group.

Codes are computed from the fp16-rounded scale that decode multiplies by; a zero scale (all-zero group, or values too
small for an fp16 scale) codes zeros. Payload body (family "quant", the image's grid in the header): the scales
(fp16, little-endian, token-major) then the codes, exactly sized. The token width is not stored: it is the one width
whose body has the payload's length (body size grows with the width; on a one-token int4 image an odd width ends in
the pad nibble -8), or the codec's `dim` when it was given one.

`QuantCodec.decode_graphs` gives the decode step as one standard ONNX graph (blocked DequantizeLinear, opset 21) that
an engine would run; its FP8 and INT4 feeds reach ONNX Runtime through `onnx_types.ort_inputs`.
"""

import bisect
import functools
import hashlib
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper

from ..codec.payload import Payload, expect_all
from ..models.grid import grid_of
from ..util.errors import NtcError
from .decode_cost import DecodeGraph
from .onnx_types import pack_int4, unpack_int4

FAMILY = "quant"
SCALE_DTYPE = np.dtype("<f2")
OPSET = 21  # blocked DequantizeLinear and the INT4 type arrived in opset 21
IR_VERSION = 10  # the IR version that carries opset 21 (older runtimes read it)
INT4_PAD = 0x8  # the nibble -8 ends an odd count of int4 codes: symmetric codes stay in -7..7


@dataclass(frozen=True)
class QuantKind:
    """One quantization format: its code type and how many consecutive channels share a scale (None: the token)."""

    name: str
    arch: str
    row: str  # its name as a rate-distortion reference row
    code_dtype: type
    group: int | None

    @property
    def qmax(self) -> float:
        """The largest code magnitude the symmetric scale maps amax to."""
        return float(_info(self.code_dtype).max)

    @property
    def bits(self) -> int:
        return int(_info(self.code_dtype).bits)

    @property
    def is_float(self) -> bool:
        return not isinstance(_info(self.code_dtype), ml_dtypes.iinfo)


def _info(dtype):
    """ml_dtypes' iinfo of an integer code type, finfo of a floating one."""
    try:
        return ml_dtypes.iinfo(dtype)
    except ValueError:
        return ml_dtypes.finfo(dtype)


KINDS = {
    "fp8": QuantKind("fp8", "fp8-token", "fp8 (E4M3, per token)", ml_dtypes.float8_e4m3fn, None),
    "int8": QuantKind("int8", "int8-token", "int8 (per token)", np.int8, None),
    "int4": QuantKind("int4", "int4-g32", "int4 (g32)", ml_dtypes.int4, 32),
}


def kinds() -> tuple[str, ...]:
    """The quantization kinds, by name."""
    return tuple(KINDS)


# ---- the codec ------------------------------------------------------------------------------------------------------


class QuantCodec:
    """Token quantization of kind `kind` ("fp8", "int8", "int4"); implements the compressor contract. `dim`: the token
    width it takes (any width when None)."""

    is_compressor = True
    family = FAMILY

    def __init__(self, kind: str, dim: int | None = None):
        if kind not in KINDS:
            raise NtcError(f"unknown token quantization {kind!r}; choose from {', '.join(KINDS)}")
        self.kind, self.dim = KINDS[kind], dim
        self.arch = self.kind.arch

    def fingerprint(self) -> bytes:
        return hashlib.sha256(f"{FAMILY}|{self.arch}".encode()).digest()[:8]

    def group_size(self, dim: int) -> int:
        """Channels per scale at token width `dim` (the last group may be shorter)."""
        return min(self.kind.group or dim, dim)

    def scales_per_token(self, dim: int) -> int:
        return -(-dim // self.group_size(dim))

    def body_bytes(self, tokens: int, dim: int) -> int:
        """Exact payload body size of an image of `tokens` tokens of width `dim`: fp16 scales then packed codes."""
        scale_bytes = tokens * self.scales_per_token(dim) * SCALE_DTYPE.itemsize
        return scale_bytes + -(-tokens * dim * self.kind.bits // 8)

    # -- quantization ------------------------------------------------------------------------------------------------

    def _spread(self, scales: np.ndarray, dim: int) -> np.ndarray:
        """Scales [..., G] -> float32 [..., dim], each group's scale on its channels."""
        g = self.group_size(dim)
        counts = np.minimum(g, dim - np.arange(0, dim, g))
        return np.repeat(scales.astype(np.float32), counts, axis=-1)

    def quantize(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tokens float32 [..., D] -> (fp16 scales [..., G], codes [..., D] in the kind's code type)."""
        x = np.asarray(tokens, np.float32)
        if not np.isfinite(x).all():
            raise NtcError(f"{self.arch}: patch tokens hold NaN or inf; only finite tokens can be quantized")
        dim = x.shape[-1]
        amax = np.maximum.reduceat(np.abs(x), np.arange(0, dim, self.group_size(dim)), axis=-1)
        ratio = amax / np.float32(self.kind.qmax)
        if (ratio > np.finfo(SCALE_DTYPE).max).any():
            raise NtcError(f"{self.arch}: token values up to {amax.max():g} overflow an fp16 scale")
        scales = ratio.astype(SCALE_DTYPE)
        spread = self._spread(scales, dim)
        # a zero scale holds values too small to code: they code as zero, never as NaN
        y = np.divide(x, spread, out=np.zeros_like(x), where=spread > 0)
        if not self.kind.is_float:
            y = np.rint(y)  # round half to even
        y = np.clip(y, -self.kind.qmax, self.kind.qmax)  # an fp16 scale rounded down may push amax past qmax
        return scales, y.astype(self.kind.code_dtype)

    def dequantize(self, scales: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """(fp16 scales [..., G], codes [..., D]) -> float32 tokens [..., D]: code * scale, exact in float32."""
        return codes.astype(np.float32) * self._spread(scales, codes.shape[-1])

    # -- payloads ----------------------------------------------------------------------------------------------------

    def _body(self, scales: np.ndarray, codes: np.ndarray) -> bytes:
        if self.kind.bits == 4:
            packed = pack_int4(codes, INT4_PAD)
        else:
            packed = np.ascontiguousarray(codes).view(np.uint8).tobytes()
        return np.ascontiguousarray(scales, SCALE_DTYPE).tobytes() + packed

    def _parse(self, body: bytes, tokens: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """A body of the right size -> (fp16 scales [T, G], codes [T, D])."""
        n_scales = tokens * self.scales_per_token(dim)
        scales = np.frombuffer(body, SCALE_DTYPE, n_scales).reshape(tokens, -1)
        rest = body[n_scales * SCALE_DTYPE.itemsize:]
        if self.kind.bits == 4:
            codes = unpack_int4(rest, tokens * dim)
        else:
            codes = np.frombuffer(rest, np.uint8).view(self.kind.code_dtype)
        return scales, codes.reshape(tokens, dim)

    def _width(self, body: bytes, tokens: int) -> int:
        """The token width of a body: the codec's `dim` when set, otherwise the largest width whose body fits (at
        least 1: a length no width gives is then reported against it)."""
        if self.dim is not None:
            return self.dim
        size = functools.partial(self.body_bytes, tokens)  # grows with the width
        dim = max(1, bisect.bisect_right(range(1, 8 * len(body) + 2), len(body), key=size))
        # int4 on one token: widths 2k-1 and 2k fill the same bytes; only the odd one ends in the pad nibble
        if dim > 1 and size(dim - 1) == size(dim) and body[-1] >> 4 == INT4_PAD:
            return dim - 1
        return dim

    def encode(self, patch_tokens) -> list[bytes]:
        """Patch tokens [N, h, w, D] (or [N, h*w, D] on a square grid) -> one payload per image, its grid recorded."""
        tokens = np.asarray(patch_tokens, np.float32)
        grid = grid_of(tokens, self.arch, dim=self.dim)
        scales, codes = self.quantize(tokens.reshape(len(tokens), -1, tokens.shape[-1]))
        fingerprint = self.fingerprint()
        return [Payload(FAMILY, fingerprint, grid, self._body(s, c)).pack() for s, c in zip(scales, codes)]

    def unpack(self, payloads) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[int, int]]:
        """([(fp16 scales [T, G], codes [T, D]) per image], grid) of payloads of one grid; a one-line NtcError for a
        body of the wrong size."""
        parsed = expect_all(payloads, FAMILY, self.fingerprint())
        grid = parsed[0].grid
        tokens = grid[0] * grid[1]
        out = []
        for i, p in enumerate(parsed):
            dim = self._width(p.body, tokens)
            want = self.body_bytes(tokens, dim)
            if len(p.body) != want:
                raise NtcError(f"payload {i}: {len(p.body)} body bytes, {self.arch} of {grid[0]}x{grid[1]} tokens of "
                               f"width {dim} needs {want}")
            out.append(self._parse(p.body, tokens, dim))
        return out, grid

    def decode(self, payloads) -> np.ndarray:
        """Payloads of one grid -> patch tokens float32 [N, h*w, D]."""
        images, _ = self.unpack(payloads)
        if len({codes.shape[-1] for _, codes in images}) != 1:
            raise NtcError(f"{self.arch} payloads of one grid hold tokens of different widths: decode each on its own")
        return np.stack([self.dequantize(s, c) for s, c in images])

    # -- the decode step as an ONNX graph ----------------------------------------------------------------------------

    def decode_graphs(self, patch_tokens) -> list[DecodeGraph]:
        """The decode step of one image (patch tokens [1, h, w, D]) as one ONNX graph: DequantizeLinear of its codes
        ["batch", h*w, D] with its fp16 scales ["batch", h*w, G] -> "tokens" float32 ["batch", h*w, D], fed with the
        codes and scales of its payload (batch 1)."""
        tokens = np.asarray(patch_tokens, np.float32)
        grid_of(tokens, self.arch, dim=self.dim)
        if len(tokens) != 1:
            raise NtcError(f"{self.arch}: a decode graph is built for one image, got {len(tokens)}")
        (scales, codes), = self.unpack(self.encode(tokens))[0]
        n, dim = codes.shape
        codes_in, scales_in = codes.reshape(1, n, dim), np.ascontiguousarray(scales, np.float16).reshape(1, n, -1)
        nodes = [
            # DequantizeLinear gives its scale's type: an fp16 product would round code * scale, float32 holds it
            helper.make_node("Cast", ["scales"], ["scales_f32"], to=TensorProto.FLOAT),
            # blocked along the channels (a per-token scale is one block of the whole token): unlike a per-axis
            # scale, it keeps one scale per token of every image when images are batched
            helper.make_node("DequantizeLinear", ["codes", "scales_f32"], ["tokens"], axis=2,
                             block_size=self.group_size(dim)),
        ]
        graph = helper.make_graph(
            nodes, f"{self.arch}_decode",
            [helper.make_tensor_value_info("codes", helper.np_dtype_to_tensor_dtype(codes.dtype), ["batch", n, dim]),
             helper.make_tensor_value_info("scales", TensorProto.FLOAT16, ["batch", n, scales_in.shape[-1]])],
            [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch", n, dim])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ntc-export")
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model, full_check=True)
        return [DecodeGraph(f"{self.arch} dequantize", model, {"codes": codes_in, "scales": scales_in})]


def reference_codecs(dim: int | None = None) -> dict[str, QuantCodec]:
    """The token quantization reference rows by name (fp8, int8, int4 g32); `dim`: the token width (any when None)."""
    return {k.row: QuantCodec(k.name, dim) for k in KINDS.values()}
