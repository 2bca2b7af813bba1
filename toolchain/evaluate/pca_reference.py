"""The linear reference line for rate-distortion: PCA + per-component uniform quantization.

Fitted on training tokens only: the mean, the top-k principal directions, and per component a clipping range
(0.1 / 99.9 percentiles of the training projections). Each token keeps k components quantized to b bits, packed
into a real payload (family "pca", the same container as every compressor), so its bytes are measured exactly like
a learned model's. For a target rate the (k, b) pair is chosen on the training tokens, never on evaluation data.
With `cell` c > 1 the same codec runs on c x c token cells (c*c*D values each): the linear line for compressors that
code neighbouring tokens together. Any grid: payloads record the image's own grid; cells pad it to whole cells by
edge repetition (as the compressors do) and are cropped back. Training tokens may be one array [N, T, D] or a list of
them (one per grid).
"""

import hashlib

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..codec.payload import Payload, expect_all
from ..models.grid import crop_grid, grid_of, padded
from ..util.errors import NtcError
from .decode_cost import DecodeGraph
from .fidelity import token_cosine

FAMILY = "pca"
BITS = (2, 3, 4, 5, 6, 8)  # candidate bits per component
FP16_BITS = 16
OPSET = 18
IR_VERSION = 8  # the IR version of opset 18: older runtimes read it


class PcaCodec:
    """k principal components of each token at `bits` bits; implements the compressor contract (encode/decode)."""

    is_compressor = True
    family = FAMILY

    def __init__(self, mean: np.ndarray, basis: np.ndarray, lo: np.ndarray, hi: np.ndarray, bits: int):
        self.mean, self.basis, self.lo, self.hi, self.bits = mean, basis, lo, hi, int(bits)
        self.arch = f"pca{basis.shape[0]}x{self.bits}b"

    @property
    def components(self) -> int:
        return self.basis.shape[0]

    def fingerprint(self) -> bytes:
        h = hashlib.sha256(f"{FAMILY}|{self.bits}".encode())
        for a in (self.mean, self.basis, self.lo, self.hi):
            h.update(np.ascontiguousarray(a, np.float32).tobytes())
        return h.digest()[:8]

    def _codes(self, tokens: np.ndarray) -> np.ndarray:
        levels = (1 << self.bits) - 1
        proj = (tokens - self.mean) @ self.basis.T
        scaled = (np.clip(proj, self.lo, self.hi) - self.lo) / (self.hi - self.lo)
        return np.rint(scaled * levels).astype(np.uint8)

    def _values(self, codes: np.ndarray) -> np.ndarray:
        levels = (1 << self.bits) - 1
        proj = self.lo + codes.astype(np.float32) / levels * (self.hi - self.lo)
        return (proj @ self.basis + self.mean).astype(np.float32)

    def encode(self, patch_tokens) -> list[bytes]:
        """Patch tokens [N, h, w, D] (or [N, h*w, D] on a square grid) -> one payload per image, its grid recorded."""
        tokens = np.asarray(patch_tokens, dtype=np.float32)
        grid = grid_of(tokens, self.arch, dim=self.basis.shape[1])
        return self.pack(tokens.reshape(len(tokens), -1, tokens.shape[-1]), grid)

    def pack(self, units: np.ndarray, grid: tuple[int, int]) -> list[bytes]:
        """Payloads of coded units [N, T, D] (tokens, or cells of a grid) recorded on `grid`."""
        codes = self._codes(units)  # [N, T, k]
        bits = np.unpackbits(codes[..., None], axis=-1)[..., 8 - self.bits:]  # low `bits` bits, MSB first
        fingerprint = self.fingerprint()
        return [Payload(FAMILY, fingerprint, grid, np.packbits(b.reshape(-1)).tobytes()).pack() for b in bits]

    def decode(self, payloads) -> np.ndarray:
        """Payloads of one grid -> patch tokens float32 [N, h*w, D]."""
        return self.unpack(payloads, lambda grid: grid[0] * grid[1])[0]

    def unpack(self, payloads, units_of) -> tuple[np.ndarray, tuple[int, int]]:
        """(decoded units [N, T, D], the payloads' grid) of payloads of one grid holding `units_of(grid)` units."""
        parsed = expect_all(payloads, FAMILY, self.fingerprint())
        grid = parsed[0].grid
        n_bits = units_of(grid) * self.components * self.bits
        out = []
        for i, p in enumerate(parsed):
            if len(p.body) != -(-n_bits // 8):
                raise NtcError(f"payload {i}: {len(p.body)} body bytes, {p.grid} tokens need {-(-n_bits // 8)}")
            bits = np.unpackbits(np.frombuffer(p.body, np.uint8))[:n_bits].reshape(-1, self.bits)
            codes = (bits * (1 << np.arange(self.bits - 1, -1, -1))).sum(-1).reshape(-1, self.components)
            out.append(self._values(codes))
        return np.stack(out), grid

    def decode_graphs(self, patch_tokens) -> list[DecodeGraph]:
        """The decode step of one image (patch tokens [1, h, w, D]) as one ONNX graph: codes uint8 [1, h*w, k] ->
        Cast -> Mul/Add dequantization -> MatMul basis -> Add mean -> "tokens" float32 [1, h*w, D], fed with the
        image's codes (what its payload's bits unpack to)."""
        tokens = _one_image(patch_tokens, self.arch)
        grid_of(tokens, self.arch, dim=self.basis.shape[1])
        units = tokens.reshape(1, -1, tokens.shape[-1])
        codes = self._codes(units)
        nodes, inits = self.dequant_nodes("tokens")
        return [DecodeGraph(f"{self.arch} dequantize", _model(self.arch, nodes, inits, codes, "tokens",
                                                              list(units.shape)), {"codes": codes})]

    def dequant_nodes(self, out: str) -> tuple[list, list]:
        """(nodes, initializers) taking "codes" uint8 [1, T, k] to `out` float32 [1, T, D], as `_values` computes."""
        step = (self.hi - self.lo) / ((1 << self.bits) - 1)
        inits = [onnx.numpy_helper.from_array(np.asarray(a, np.float32), name) for name, a in
                 (("step", step), ("lo", self.lo), ("basis", self.basis), ("mean", self.mean))]
        nodes = [helper.make_node("Cast", ["codes"], ["codes_f32"], to=TensorProto.FLOAT),
                 helper.make_node("Mul", ["codes_f32", "step"], ["scaled"]),
                 helper.make_node("Add", ["scaled", "lo"], ["proj"]),
                 helper.make_node("MatMul", ["proj", "basis"], ["centred"]),
                 helper.make_node("Add", ["centred", "mean"], [out])]
        return nodes, inits


def to_cells(tokens: np.ndarray, cell: int) -> np.ndarray:
    """Tokens [N, h, w, D] (or [N, s*s, D] on a square grid) -> c x c cells [N, (hp/c)*(wp/c), c*c*D], laid out as
    bc_autoencoder's, the grid padded to whole cells by repeating its last row/column (hp, wp: multiples of c)."""
    import torch

    from ..models.bc_autoencoder import merge_cells
    from ..models.grid import as_grid, pad_grid

    grid = as_grid(torch.from_numpy(np.ascontiguousarray(tokens, np.float32)))
    hp, wp = (padded(s, cell) for s in grid.shape[1:3])
    flat = pad_grid(grid, cell).reshape(len(grid), hp * wp, grid.shape[-1])
    return merge_cells(flat, hp, wp, cell).numpy()


def from_cells(cells: np.ndarray, cell: int, cell_grid: tuple[int, int] | None = None) -> np.ndarray:
    """Inverse of to_cells up to the padding: cells on `cell_grid` (square when None) -> tokens
    [N, (c*gh)*(c*gw), D]."""
    import torch

    from ..models.bc_autoencoder import unmerge_cells

    gh, gw = cell_grid or (int(round(cells.shape[1] ** 0.5)),) * 2
    return unmerge_cells(torch.from_numpy(np.ascontiguousarray(cells)), gh, gw, cell).numpy()


class CellPcaCodec:
    """A PcaCodec fitted on c x c token cells, taking and giving tokens (any grid: padded to whole cells, its
    payloads record the image's own grid and hold the padded grid's cells)."""

    is_compressor = True
    family = FAMILY

    def __init__(self, inner: PcaCodec, cell: int):
        self.inner, self.cell = inner, cell
        self.arch = f"{inner.arch}@{cell}x{cell}"

    def _cell_grid(self, grid: tuple[int, int]) -> tuple[int, int]:
        return padded(grid[0], self.cell) // self.cell, padded(grid[1], self.cell) // self.cell

    def encode(self, patch_tokens) -> list[bytes]:
        tokens = np.asarray(patch_tokens, np.float32)
        grid = grid_of(tokens, self.arch, dim=self.inner.basis.shape[1] // (self.cell * self.cell))
        return self.inner.pack(to_cells(tokens, self.cell), grid)

    def decode(self, payloads) -> np.ndarray:
        cells, grid = self.inner.unpack(payloads, lambda g: int(np.prod(self._cell_grid(g))))
        gh, gw = self._cell_grid(grid)
        return crop_grid(from_cells(cells, self.cell, (gh, gw)), (gh * self.cell, gw * self.cell), grid)

    def decode_graphs(self, patch_tokens) -> list[DecodeGraph]:
        """The decode step of one image (patch tokens [1, h, w, D]) as one ONNX graph: the inner PCA dequantization
        of its cells, then the cells unmerged (Reshape, Transpose, Reshape) and cropped to the image's grid (Slice) ->
        "tokens" float32 [1, h*w, D], fed with the image's cell codes."""
        tokens = _one_image(patch_tokens, self.arch)
        c, dim = self.cell, self.inner.basis.shape[1] // (self.cell * self.cell)
        h, w = grid_of(tokens, self.arch, dim=dim)
        gh, gw = self._cell_grid((h, w))
        codes = self.inner._codes(to_cells(tokens, c))
        nodes, inits = self.inner.dequant_nodes("cells")
        # 0 in a Reshape shape keeps the batch axis as it comes: the graph runs any batch
        shapes = {"cell_shape": [0, gh, gw, c, c, dim], "padded_shape": [0, gh * c, gw * c, dim],
                  "starts": [0, 0], "ends": [h, w], "axes": [1, 2], "out_shape": [0, h * w, dim]}
        inits += [onnx.numpy_helper.from_array(np.asarray(v, np.int64), k) for k, v in shapes.items()]
        nodes += [helper.make_node("Reshape", ["cells", "cell_shape"], ["cell_grid"]),
                  # rows of cells, then rows inside a cell: the inverse of merge_cells' permute
                  helper.make_node("Transpose", ["cell_grid"], ["token_rows"], perm=[0, 1, 3, 2, 4, 5]),
                  helper.make_node("Reshape", ["token_rows", "padded_shape"], ["padded"]),
                  helper.make_node("Slice", ["padded", "starts", "ends", "axes"], ["cropped"]),
                  helper.make_node("Reshape", ["cropped", "out_shape"], ["tokens"])]
        return [DecodeGraph(f"{self.arch} dequantize", _model(self.arch, nodes, inits, codes, "tokens",
                                                              [1, h * w, dim]), {"codes": codes})]


def _one_image(patch_tokens, arch: str) -> np.ndarray:
    tokens = np.asarray(patch_tokens, np.float32)
    if len(tokens) != 1:
        raise NtcError(f"{arch}: a decode graph is built for one image, got {len(tokens)}")
    return tokens


def _model(arch: str, nodes: list, inits: list, codes: np.ndarray, out: str, out_shape: list) -> onnx.ModelProto:
    """A checked opset-18 model of `nodes` from input "codes" (uint8, the shape of `codes`) to `out` float32, both
    with a symbolic batch axis."""
    graph = helper.make_graph(nodes, f"{arch}_decode",
                              [helper.make_tensor_value_info("codes", TensorProto.UINT8, ["batch", *codes.shape[1:]])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", *out_shape[1:]])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ntc-export")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def fit_units(tokens, cell: int = 1):
    """What a PCA reference fits on from a token set (any grids): patch tokens [N, h*w, D], or c x c cells of them;
    one array for one grid, a list of arrays (one per grid) otherwise."""
    units = [ts.patch_tokens if cell == 1 else to_cells(ts.grid_tokens, cell) for _, ts in tokens.by_grid()]
    return units[0] if len(units) == 1 else units


def _rows(units) -> np.ndarray:
    """Units [N, T, D] or a list of such arrays (one per grid) -> rows [sum N*T, D] float32."""
    parts = units if isinstance(units, list) else [units]
    return np.concatenate([np.asarray(u, np.float32).reshape(-1, u.shape[-1]) for u in parts])


def _first_images(units, n: int):
    """The first `n` images of units [N, T, D], or of a list of them (one per grid) as rows [-1, D]."""
    if not isinstance(units, list):
        return np.asarray(units, np.float32)[:n]
    out, left = [], n
    for u in units:
        out.append(u[:max(left, 0)])
        left -= len(u)
    return _rows([u for u in out if len(u)])


def fit_basis(train_tokens: np.ndarray, max_tokens: int = 200_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], principal directions [D, D] by decreasing variance) of training tokens [N, T, D] (or a list)."""
    x = _rows(train_tokens)
    if len(x) > max_tokens:
        x = x[np.random.default_rng(seed).choice(len(x), max_tokens, replace=False)]
    mean = x.mean(0)
    _, _, vt = np.linalg.svd((x - mean).astype(np.float64), full_matrices=False)
    return mean, vt.astype(np.float32)


def clip_ranges(train_tokens: np.ndarray, mean: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-direction clipping range (0.1 / 99.9 percentiles) of the training projections."""
    x = _rows(train_tokens)
    proj = (x - mean) @ directions.T
    lo, hi = np.percentile(proj, 0.1, axis=0), np.percentile(proj, 99.9, axis=0)
    return lo.astype(np.float32), np.where(hi > lo, hi, lo + 1e-6).astype(np.float32)


def codec(train_tokens: np.ndarray, mean: np.ndarray, directions: np.ndarray, k: int, bits: int,
          ranges: tuple[np.ndarray, np.ndarray] | None = None) -> PcaCodec:
    """The (k, bits) codec with clipping ranges from the training projections (`ranges`: already computed)."""
    lo, hi = ranges if ranges is not None else clip_ranges(train_tokens, mean, directions[:k])
    return PcaCodec(mean, directions[:k], lo[:k], hi[:k], bits)


def for_rate(train_tokens: np.ndarray, rate: float, basis=None, select_samples: int = 64) -> PcaCodec:
    """The best PCA codec whose payload body stays within fp16 tokens / `rate`: for each bit depth the most
    components that fit, the pair kept by token cosine on (a slice of) the training tokens (or cells: `to_cells`)."""
    if not isinstance(train_tokens, list):
        train_tokens = np.asarray(train_tokens, np.float32)
    dim = _rows(train_tokens[:1]).shape[-1]
    mean, directions = basis if basis is not None else fit_basis(train_tokens)
    budget = dim * FP16_BITS / rate  # bits per token
    sample = _first_images(train_tokens, select_samples)
    k_max = min(dim, int(budget // min(BITS)))
    ranges = clip_ranges(train_tokens, mean, directions[:k_max])  # one projection serves every (k, bits) candidate
    best, best_cos = None, -np.inf
    for bits in BITS:
        k = min(dim, int(budget // bits))
        if k < 1:
            continue
        c = codec(train_tokens, mean, directions, k, bits, ranges)
        cos = token_cosine(c._values(c._codes(sample)), sample)
        if cos > best_cos:
            best, best_cos = c, cos
    if best is None:
        raise NtcError(f"rate {rate:g}x leaves under {min(BITS)} bits per token: no PCA reference fits")
    return best
