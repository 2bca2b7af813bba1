"""Host range coding of learned-transform latents with `constriction` (queue = range coder, 32-bit words).

Two streams per image: z (the hyper-latent) under per-channel categorical pmfs (the factorized prior's pmf on each
channel's integer support, given as a float table [C, L]), and y under quantized zero-mean Gaussians whose std per
symbol comes from the scale table index the decoder recomputes from z. Body layout (little-endian): z word count
(u32), z words (u32 each), y words (u32 each), CRC32 of the coded symbols (u32): a corrupted or mismatched body is
refused instead of decoding into garbage. numpy in, numpy out; the models compute every table.
"""

import struct
import zlib

import numpy as np

from ..util.errors import NtcError

_U32 = struct.Struct("<I")
PRECISION = 24  # constriction's model precision (bits): no coded symbol costs more than this
FRAMING_BYTES = 2 * _U32.size  # z word count + CRC32: the body's bytes beyond the two streams


def _constriction():
    try:
        import constriction
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise NtcError(f"range coding needs the constriction package ({e})") from None
    return constriction


def encode_categorical(symbols: np.ndarray, pmfs: np.ndarray) -> np.ndarray:
    """symbols int [n] (0-based) with one pmf row each [n, L] -> uint32 words."""
    c = _constriction()
    symbols = np.ascontiguousarray(symbols, dtype=np.int32).reshape(-1)
    pmfs = np.ascontiguousarray(pmfs, dtype=np.float64).reshape(len(symbols), -1)
    if len(symbols) and (symbols.min() < 0 or symbols.max() >= pmfs.shape[1]):
        raise NtcError(f"range coder: categorical symbols outside 0..{pmfs.shape[1] - 1}")
    enc = c.stream.queue.RangeEncoder()
    if len(symbols):
        enc.encode(symbols, c.stream.model.Categorical(perfect=False), pmfs)
    return enc.get_compressed()


def decode_categorical(words: np.ndarray, pmfs: np.ndarray) -> np.ndarray:
    """uint32 words + one pmf row per symbol [n, L] -> symbols int32 [n]."""
    c = _constriction()
    pmfs = np.ascontiguousarray(pmfs, dtype=np.float64)
    if not len(pmfs):
        return np.zeros(0, np.int32)
    try:
        dec = c.stream.queue.RangeDecoder(np.ascontiguousarray(words, dtype=np.uint32))
        return np.asarray(dec.decode(c.stream.model.Categorical(perfect=False), pmfs), dtype=np.int32)
    except (ValueError, RuntimeError, AssertionError) as e:
        raise NtcError(f"range coder: corrupt z stream ({str(e).strip()[:120]})") from None


def encode_gaussian(symbols: np.ndarray, stds: np.ndarray, max_symbol: int) -> np.ndarray:
    """Integer symbols [n] in [-max_symbol, max_symbol] under N(0, std^2) quantized to unit bins -> uint32 words."""
    c = _constriction()
    symbols = np.ascontiguousarray(symbols, dtype=np.int32).reshape(-1)
    stds = np.ascontiguousarray(stds, dtype=np.float64).reshape(-1)
    if len(symbols) != len(stds):
        raise NtcError(f"range coder: {len(symbols)} symbols but {len(stds)} scales")
    if len(symbols) and np.abs(symbols).max() > max_symbol:
        raise NtcError(f"range coder: Gaussian symbols outside +-{max_symbol}")
    enc = c.stream.queue.RangeEncoder()
    if len(symbols):
        enc.encode(symbols, c.stream.model.QuantizedGaussian(-max_symbol, max_symbol), np.zeros_like(stds), stds)
    return enc.get_compressed()


def decode_gaussian(words: np.ndarray, stds: np.ndarray, max_symbol: int) -> np.ndarray:
    """uint32 words + one std per symbol [n] -> symbols int32 [n]."""
    c = _constriction()
    stds = np.ascontiguousarray(stds, dtype=np.float64).reshape(-1)
    if not len(stds):
        return np.zeros(0, np.int32)
    model = c.stream.model.QuantizedGaussian(-max_symbol, max_symbol)
    try:
        dec = c.stream.queue.RangeDecoder(np.ascontiguousarray(words, dtype=np.uint32))
        return np.asarray(dec.decode(model, np.zeros_like(stds), stds), dtype=np.int32)
    except (ValueError, RuntimeError, AssertionError) as e:
        raise NtcError(f"range coder: corrupt y stream ({str(e).strip()[:120]})") from None


def symbols_crc(*arrays: np.ndarray) -> int:
    """CRC32 of the symbol arrays as little-endian int32, in order."""
    crc = 0
    for a in arrays:
        crc = zlib.crc32(np.ascontiguousarray(a, dtype="<i4").tobytes(), crc)
    return crc


def pack_body(z_words: np.ndarray, y_words: np.ndarray, crc: int) -> bytes:
    """The payload body: z word count, z words, y words, CRC32."""
    z = np.ascontiguousarray(z_words, dtype="<u4")
    y = np.ascontiguousarray(y_words, dtype="<u4")
    return _U32.pack(len(z)) + z.tobytes() + y.tobytes() + _U32.pack(crc & 0xFFFFFFFF)


def unpack_body(body: bytes, what: str = "payload") -> tuple[np.ndarray, np.ndarray, int]:
    """(z words, y words, CRC32) of a body from `pack_body`; a one-line NtcError when it cannot be one."""
    if len(body) < FRAMING_BYTES or len(body) % 4:
        raise NtcError(f"{what}: range-coded body of {len(body)} bytes is truncated (need whole 32-bit words and "
                       f"{FRAMING_BYTES} framing bytes)")
    (nz,) = _U32.unpack_from(body, 0)
    end = _U32.size + 4 * nz
    if end > len(body) - _U32.size:
        raise NtcError(f"{what}: z stream of {nz} words does not fit the {len(body)}-byte body (truncated or corrupt)")
    z = np.frombuffer(body, "<u4", nz, _U32.size).astype(np.uint32)
    y = np.frombuffer(body[end:len(body) - _U32.size], "<u4").astype(np.uint32)
    (crc,) = _U32.unpack_from(body, len(body) - _U32.size)
    return z, y, crc


def check_crc(crc: int, what: str, *arrays: np.ndarray) -> None:
    """NtcError unless the decoded symbols hash to the CRC32 the encoder stored."""
    got = symbols_crc(*arrays)
    if got != crc:
        raise NtcError(f"{what}: corrupt bitstream (decoded symbols' CRC32 {got:08x}, the payload says {crc:08x})")
