"""Host BC decoder vs independent decoders (bcdec via imagecodecs, texture2ddecoder), hand-built blocks, fuzzing."""

import ctypes

import imagecodecs
import numpy as np
import pytest
import texture2ddecoder
from ntc_export.codec.decode import BLOCK_BYTES, FORMAT_CODES, blocks_to_int32, decode, encoded_size, int32_to_blocks
from ntc_export.native.host import host_library
from ntc_export.util.errors import NtcError

BCDEC_CODES = {"bc1": 1, "bc4": 4, "bc5": 5, "bc6h_uf16": 6, "bc6h_sf16": -6, "bc7": 7}
BLOCKS_Y, BLOCKS_X = 250, 400  # 100,000 blocks, decoded as one image
BC6H_MODES = (0, 1, 2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31)


def _bcdec(data: np.ndarray, fmt: str, height: int, width: int) -> np.ndarray:
    channels = {"bc1": 4, "bc4": None, "bc5": 2, "bc6h_uf16": 3, "bc6h_sf16": 3, "bc7": 4}[fmt]
    shape = (height, width) if channels is None else (height, width, channels)
    return imagecodecs.bcn_decode(data.tobytes(), BCDEC_CODES[fmt], shape=shape)


def _random_blocks(fmt: str, seed: int, n: int = BLOCKS_Y * BLOCKS_X) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, BLOCK_BYTES[fmt]), dtype=np.uint8)


def _with_every_mode(fmt: str, blocks: np.ndarray) -> np.ndarray:
    """Rewrite the mode field so every mode (reserved ones included) gets an equal share of the blocks."""
    blocks = blocks.copy()
    n = len(blocks)
    if fmt == "bc7":
        modes = np.arange(n) % 9  # 8 = reserved (mode byte without a set bit in its mode field)
        low = blocks[:, 0].astype(np.int64)
        byte0 = np.where(modes < 8, ((low >> (modes + 1)) << (modes + 1)) | (1 << modes), 0)
        blocks[:, 0] = (byte0 & 0xFF).astype(np.uint8)
    else:
        modes = np.array(BC6H_MODES)[np.arange(n) % len(BC6H_MODES)]
        width = np.where(modes < 2, 2, 5)
        mask = (1 << width) - 1
        blocks[:, 0] = ((blocks[:, 0] & ~mask) | modes).astype(np.uint8)
    return blocks


def _decode_both(fmt: str, blocks: np.ndarray):
    h, w = 4 * BLOCKS_Y, 4 * BLOCKS_X
    # Blocks are row-major over the block grid: reshape the flat list into the image's block rows.
    flat = blocks.reshape(-1)
    return decode(flat, fmt, h, w), _bcdec(flat, fmt, h, w)


@pytest.mark.parametrize("fmt", ["bc4", "bc5", "bc6h_uf16", "bc7"])
def test_bit_exact_vs_bcdec_random_blocks(fmt):
    ours, ref = _decode_both(fmt, _random_blocks(fmt, seed=FORMAT_CODES[fmt]))
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    if fmt.startswith("bc6h"):
        ours, ref = ours.view(np.uint16), ref.view(np.uint16)
    mismatches = int(np.count_nonzero(ours != ref))
    assert mismatches == 0, f"{fmt}: {mismatches} texel channels differ from bcdec"


@pytest.mark.parametrize("fmt", ["bc6h_uf16", "bc7"])
def test_bit_exact_vs_bcdec_every_mode(fmt):
    blocks = _with_every_mode(fmt, _random_blocks(fmt, seed=100 + FORMAT_CODES[fmt], n=BLOCKS_Y * BLOCKS_X // 4))
    h, w = BLOCKS_Y, 4 * BLOCKS_X  # 25,000 blocks: 62 block rows x 400
    ours = decode(blocks.reshape(-1)[: (h // 4) * (w // 4) * 16], fmt, h - h % 4, w)
    ref = _bcdec(blocks.reshape(-1)[: (h // 4) * (w // 4) * 16], fmt, h - h % 4, w)
    if fmt.startswith("bc6h"):
        ours, ref = ours.view(np.uint16), ref.view(np.uint16)
    assert np.array_equal(ours, ref)
    # Reserved modes decode to zero.
    if fmt == "bc7":
        assert not ours[:4, 32:36].any()  # block 8 of the first row has the reserved mode byte
    else:
        assert not ours[:4, 4 * 14:4 * 15].any()  # block 14 uses mode 19 (reserved)


def test_bc6h_sf16_matches_bcdec_up_to_signed_zero():
    ours, ref = _decode_both("bc6h_sf16", _random_blocks("bc6h_sf16", seed=4))
    ours_bits, ref_bits = ours.view(np.uint16), ref.view(np.uint16)
    differ = ours_bits != ref_bits
    # The specification ORs the sign into a value that truncates to zero (-0, 0x8000); bcdec returns +0 there.
    assert np.all(ours_bits[differ] == 0x8000) and np.all(ref_bits[differ] == 0)
    assert differ.mean() < 1e-4
    np.testing.assert_array_equal(ours.astype(np.float32), ref.astype(np.float32))


def test_bc1_within_one_of_bcdec_and_texture2ddecoder():
    blocks = _random_blocks("bc1", seed=0)
    h, w = 4 * BLOCKS_Y, 4 * BLOCKS_X
    ours = decode(blocks, "bc1", h, w).astype(np.int16)
    ref_bcdec = _bcdec(blocks.reshape(-1), "bc1", h, w).astype(np.int16)
    bgra = np.frombuffer(texture2ddecoder.decode_bc1(blocks.tobytes(), w, h), np.uint8).reshape(h, w, 4)
    ref_t2d = bgra[..., [2, 1, 0, 3]].astype(np.int16)
    for ref in (ref_bcdec, ref_t2d):
        assert np.abs(ours[..., :3] - ref[..., :3]).max() <= 1
    # Alpha (transparent black in 3-colour mode) is exact vs bcdec; texture2ddecoder ignores BC1 alpha.
    assert np.array_equal(ours[..., 3], ref_bcdec[..., 3])
    # Random blocks pick the 3-colour + transparent mode about half the time.
    assert 0.05 < (ours[..., 3] == 0).mean() < 0.2


def _bc1_block(c0: int, c1: int, indices: list[int]) -> bytes:
    words = np.array([c0 | (c1 << 16), sum(i << (2 * k) for k, i in enumerate(indices))], "<u4")
    return words.tobytes()


def test_bc1_hand_built_blocks():
    # 4-colour mode: pure red (0xF800) and pure blue (0x001F), thirds between them.
    img = decode(_bc1_block(0xF800, 0x001F, [0, 1, 2, 3] * 4), "bc1", 4, 4)
    np.testing.assert_array_equal(img[0], [[255, 0, 0, 255], [0, 0, 255, 255], [170, 0, 85, 255], [85, 0, 170, 255]])
    # 3-colour mode (c0 <= c1): midpoint rounds up, index 3 is transparent black.
    img = decode(_bc1_block(0x001F, 0xF800, [0, 1, 2, 3] * 4), "bc1", 4, 4)
    np.testing.assert_array_equal(img[0], [[0, 0, 255, 255], [255, 0, 0, 255], [128, 0, 128, 255], [0, 0, 0, 0]])


def test_bc4_hand_built_blocks():
    indices = int(sum(i << (3 * k) for k, i in enumerate(list(range(8)) * 2)))
    six = decode(bytes([255, 0]) + indices.to_bytes(6, "little"), "bc4", 4, 4)
    np.testing.assert_array_equal(six[:2].reshape(-1)[:8], [255, 0, 218, 182, 145, 109, 72, 36])
    four = decode(bytes([0, 255]) + indices.to_bytes(6, "little"), "bc4", 4, 4)
    np.testing.assert_array_equal(four[:2].reshape(-1)[:8], [0, 255, 51, 102, 153, 204, 0, 255])


@pytest.mark.parametrize("fmt", ["bc1", "bc5", "bc6h_sf16", "bc7"])
def test_non_multiple_of_four_sizes_crop(fmt):
    h, w = 9, 6  # 3 x 2 blocks
    blocks = _random_blocks(fmt, seed=7, n=6)
    full = decode(blocks, fmt, 12, 8)
    cropped = decode(blocks, fmt, h, w)
    assert np.array_equal(cropped.view(np.uint8), full[:h, :w].view(np.uint8))


def test_accepts_bytes_bytearray_memoryview():
    blocks = _random_blocks("bc7", seed=3, n=4)
    ref = decode(blocks, "bc7", 8, 8)
    for data in (blocks.tobytes(), bytearray(blocks.tobytes()), memoryview(blocks.tobytes())):
        assert np.array_equal(decode(data, "bc7", 8, 8), ref)


def test_errors_name_the_problem():
    with pytest.raises(NtcError, match="must be 32 bytes"):
        decode(bytes(31), "bc1", 8, 8)
    with pytest.raises(NtcError, match="must be 64 bytes"):
        decode(bytes(65), "bc7", 5, 5)
    with pytest.raises(NtcError, match="unknown BC format 'bc3'"):
        decode(bytes(16), "bc3", 4, 4)
    with pytest.raises(NtcError, match="height must be a positive integer"):
        decode(bytes(16), "bc7", 0, 4)
    with pytest.raises(NtcError, match="width must be a positive integer"):
        decode(bytes(16), "bc7", 4, -4)
    with pytest.raises(NtcError, match="uint8"):
        decode(np.zeros(4, np.int32), "bc7", 4, 4)


def test_int32_word_layout_round_trip():
    blocks = _random_blocks("bc5", seed=5, n=12).reshape(3, 4, 16)
    words = blocks_to_int32(blocks)
    assert words.shape == (3, 4, 4) and words.dtype == np.int32
    # Each word holds the block's bytes little-endian.
    b = blocks[1, 2, 4:8].astype(np.int64)
    assert words[1, 2, 1] == np.int32(np.uint32(b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24))
    assert np.array_equal(int32_to_blocks(words), blocks)
    assert blocks_to_int32(_random_blocks("bc1", seed=6, n=2)).shape == (2, 2)
    with pytest.raises(NtcError):
        blocks_to_int32(np.zeros((2, 12), np.uint8))
    with pytest.raises(NtcError):
        int32_to_blocks(np.zeros((2, 3), np.int32))


def test_fuzz_python_api_random_buffers():
    rng = np.random.default_rng(2024)
    formats = list(FORMAT_CODES) + ["bc2", ""]
    decoded = 0
    for _ in range(2000):
        fmt = formats[rng.integers(len(formats))]
        h, w = int(rng.integers(-2, 40)), int(rng.integers(-2, 40))
        if rng.random() < 0.5 and fmt in FORMAT_CODES and h > 0 and w > 0:
            n = encoded_size(fmt, h, w)  # a matching buffer half the time
        else:
            n = int(rng.integers(0, 600))
        data = rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
        try:
            img = decode(data, fmt, h, w)
        except NtcError:
            continue
        assert img.shape[:2] == (h, w)
        decoded += 1
    assert decoded > 500


def test_fuzz_c_abi_matching_and_mismatched_sizes():
    fn = host_library().ntc_bc_decode
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    rng = np.random.default_rng(77)
    for _ in range(2000):
        code = int(rng.integers(0, 6))
        fmt = list(FORMAT_CODES)[code]
        h, w = int(rng.integers(1, 33)), int(rng.integers(1, 33))
        n = encoded_size(fmt, h, w)
        data = rng.integers(0, 256, size=n, dtype=np.uint8)
        # Guard bytes after the output detect any write past H*W*C.
        out_bytes = h * w * {0: 4, 1: 1, 2: 2, 3: 6, 4: 6, 5: 4}[code]
        out = np.full(out_bytes + 64, 0xAB, np.uint8)
        assert fn(data.ctypes.data, n, code, h, w, out.ctypes.data) == 0
        assert np.all(out[out_bytes:] == 0xAB)
        assert fn(data.ctypes.data, n - 1, code, h, w, out.ctypes.data) == -4
        assert fn(data.ctypes.data, n + 8, code, h, w, out.ctypes.data) == -4
    out = np.zeros(64, np.uint8)
    assert fn(out.ctypes.data, 8, 6, 4, 4, out.ctypes.data) == -2
    assert fn(out.ctypes.data, 8, -1, 4, 4, out.ctypes.data) == -2
    assert fn(out.ctypes.data, 8, 0, 0, 4, out.ctypes.data) == -3
    assert fn(None, 8, 0, 4, 4, out.ctypes.data) == -1
