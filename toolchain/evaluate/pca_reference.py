"""The linear reference line for rate-distortion: PCA + per-component uniform quantization.

Fitted on training tokens only: the mean, the top-k principal directions, and per component a clipping range
(0.1 / 99.9 percentiles of the training projections). Each token keeps k components quantized to b bits, packed
into a real payload (family "pca", the same container as every compressor), so its bytes are measured exactly like
a learned model's. For a target rate the (k, b) pair is chosen on the training tokens, never on evaluation data.
With `cell` c > 1 the same codec runs on c x c token cells (c*c*D values each): the linear line for compressors that
code neighbouring tokens together.
"""

import hashlib

import numpy as np

from ..codec.payload import Payload, expect, square_side, unpack
from ..util.errors import NtcError
from .fidelity import token_cosine

FAMILY = "pca"
BITS = (2, 3, 4, 5, 6, 8)  # candidate bits per component
FP16_BITS = 16


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
        tokens = np.asarray(patch_tokens, dtype=np.float32)
        side = square_side(tokens, self.arch, dim=self.basis.shape[1])
        codes = self._codes(tokens)  # [N, T, k]
        bits = np.unpackbits(codes[..., None], axis=-1)[..., 8 - self.bits:]  # low `bits` bits, MSB first
        fingerprint = self.fingerprint()
        return [Payload(FAMILY, fingerprint, (side, side), np.packbits(b.reshape(-1)).tobytes()).pack() for b in bits]

    def decode(self, payloads) -> np.ndarray:
        fingerprint = self.fingerprint()
        out = []
        for i, data in enumerate(payloads):
            p = expect(unpack(data, f"payload {i}"), FAMILY, fingerprint, f"payload {i}")
            n_bits = p.grid[0] * p.grid[1] * self.components * self.bits
            if len(p.body) != -(-n_bits // 8):
                raise NtcError(f"payload {i}: {len(p.body)} body bytes, {p.grid} tokens need {-(-n_bits // 8)}")
            bits = np.unpackbits(np.frombuffer(p.body, np.uint8))[:n_bits].reshape(-1, self.bits)
            codes = (bits * (1 << np.arange(self.bits - 1, -1, -1))).sum(-1).reshape(-1, self.components)
            out.append(self._values(codes))
        return np.stack(out)


def to_cells(tokens: np.ndarray, cell: int) -> np.ndarray:
    """Tokens [N, s*s, D] on a square grid -> c x c cells [N, (s/c)^2, c*c*D], laid out as bc_autoencoder's."""
    import torch

    from ..models.bc_autoencoder import merge_cells

    side = int(round(tokens.shape[1] ** 0.5))
    if side * side != tokens.shape[1] or side % cell:
        raise NtcError(f"{cell}x{cell} token cells need a square grid with a side divisible by {cell}, got "
                       f"{tokens.shape[1]} tokens")
    return merge_cells(torch.from_numpy(np.ascontiguousarray(tokens, np.float32)), side, side, cell).numpy()


def from_cells(cells: np.ndarray, cell: int) -> np.ndarray:
    """Inverse of to_cells."""
    import torch

    from ..models.bc_autoencoder import unmerge_cells

    g = int(round(cells.shape[1] ** 0.5))
    return unmerge_cells(torch.from_numpy(np.ascontiguousarray(cells)), g, g, cell).numpy()


class CellPcaCodec:
    """A PcaCodec fitted on c x c token cells, taking and giving tokens (its payloads hold the cell grid)."""

    is_compressor = True
    family = FAMILY

    def __init__(self, inner: PcaCodec, cell: int):
        self.inner, self.cell = inner, cell
        self.arch = f"{inner.arch}@{cell}x{cell}"

    def encode(self, patch_tokens) -> list[bytes]:
        return self.inner.encode(to_cells(np.asarray(patch_tokens, np.float32), self.cell))

    def decode(self, payloads) -> np.ndarray:
        return from_cells(self.inner.decode(payloads), self.cell)


def fit_basis(train_tokens: np.ndarray, max_tokens: int = 200_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], principal directions [D, D] by decreasing variance) of training tokens [N, T, D]."""
    x = np.asarray(train_tokens, np.float32).reshape(-1, train_tokens.shape[-1])
    if len(x) > max_tokens:
        x = x[np.random.default_rng(seed).choice(len(x), max_tokens, replace=False)]
    mean = x.mean(0)
    _, _, vt = np.linalg.svd((x - mean).astype(np.float64), full_matrices=False)
    return mean, vt.astype(np.float32)


def clip_ranges(train_tokens: np.ndarray, mean: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-direction clipping range (0.1 / 99.9 percentiles) of the training projections."""
    x = np.asarray(train_tokens, np.float32).reshape(-1, train_tokens.shape[-1])
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
    train_tokens = np.asarray(train_tokens, np.float32)
    dim = train_tokens.shape[-1]
    mean, directions = basis if basis is not None else fit_basis(train_tokens)
    budget = dim * FP16_BITS / rate  # bits per token
    sample = train_tokens[:select_samples]
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
