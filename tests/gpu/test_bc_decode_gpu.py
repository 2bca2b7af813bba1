"""CUDA BC decoder (libntc_kernels.so) bit-exact vs the host decoder: every format, both layouts, both dtypes, gather."""

import ctypes

import numpy as np
import pytest
import torch
from ntc_export.codec.decode import BLOCK_BYTES, CHANNELS, FORMAT_CODES, blocks_to_int32, decode

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

BATCH, BLOCKS_Y, BLOCKS_X = 2, 12, 20
LAYOUTS = {"nchw": 0, "tokens": 1}
DTYPES = {"float32": (0, torch.float32, np.float32), "float16": (1, torch.float16, np.float16)}


@pytest.fixture(scope="module")
def lib():
    from ntc_export.native.kernels import kernels_library
    lib = kernels_library()
    lib.ntc_bc_decode_cuda.restype = ctypes.c_int
    lib.ntc_bc_decode_cuda.argtypes = [ctypes.c_void_p] + [ctypes.c_int] * 6 + [ctypes.c_void_p, ctypes.c_void_p]
    lib.ntc_bc_decode_gather_cuda.restype = ctypes.c_int
    lib.ntc_bc_decode_gather_cuda.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                              ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    return lib


def _blocks(fmt: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(BATCH, BLOCKS_Y, BLOCKS_X, BLOCK_BYTES[fmt]), dtype=np.uint8)
    if fmt.startswith("bc6h"):  # every mode number, reserved ones included, in the first rows
        modes = np.array([0, 1, 2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31])
        flat = blocks.reshape(-1, 16)[: 4 * len(modes)]
        m = np.tile(modes, 4)
        mask = np.where(m < 2, 3, 31)
        flat[:, 0] = (flat[:, 0] & ~mask) | m
        blocks.reshape(-1, 16)[: 4 * len(modes)] = flat
    if fmt == "bc7":
        blocks[0, 0, :9, 0] = [1, 2, 4, 8, 16, 32, 64, 128, 0]  # every mode and the reserved byte
    return blocks


def _host_values(fmt: str, blocks: np.ndarray, np_dtype) -> np.ndarray:
    """Host decode of each image as float32 [B, H, W, C] in the plugin's value convention, then cast."""
    images = []
    for b in range(blocks.shape[0]):
        img = decode(blocks[b].reshape(-1), fmt, 4 * blocks.shape[1], 4 * blocks.shape[2])
        img = img.reshape(img.shape[0], img.shape[1], -1)
        if fmt.startswith("bc6h"):
            images.append(img if np_dtype == np.float16 else img.astype(np.float32))
        else:
            images.append((img.astype(np.float32) / np.float32(255)).astype(np_dtype))
    return np.stack(images)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("fmt", list(FORMAT_CODES))
def test_kernel_bit_exact_vs_host(lib, fmt, layout, dtype):
    code, torch_dtype, np_dtype = DTYPES[dtype]
    blocks = _blocks(fmt, seed=FORMAT_CODES[fmt])
    words = torch.from_numpy(blocks_to_int32(blocks)).cuda()
    c, h, w = CHANNELS[fmt], 4 * BLOCKS_Y, 4 * BLOCKS_X
    shape = (BATCH, c, h, w) if layout == "nchw" else (BATCH, h * w, c)
    out = torch.full(shape, float("nan"), dtype=torch_dtype, device="cuda")
    rc = lib.ntc_bc_decode_cuda(words.data_ptr(), BATCH, BLOCKS_Y, BLOCKS_X, FORMAT_CODES[fmt], LAYOUTS[layout],
                                code, out.data_ptr(), None)
    torch.cuda.synchronize()
    assert rc == 0
    expected = _host_values(fmt, blocks, np_dtype)  # [B, H, W, C]
    expected = expected.transpose(0, 3, 1, 2) if layout == "nchw" else expected.reshape(BATCH, h * w, c)
    bits = np.uint16 if np_dtype == np.float16 else np.uint32
    got = out.cpu().numpy()
    assert np.array_equal(got.view(bits), np.ascontiguousarray(expected).view(bits))


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("fmt", list(FORMAT_CODES))
def test_gather_bit_exact_vs_host(lib, fmt, dtype):
    code, torch_dtype, np_dtype = DTYPES[dtype]
    blocks = _blocks(fmt, seed=50 + FORMAT_CODES[fmt])
    flat = blocks.reshape(-1, BLOCK_BYTES[fmt])
    rng = np.random.default_rng(1)
    indices = rng.integers(0, len(flat), size=300).astype(np.int32)
    indices[::37] = -1  # negative index: zeros
    c = CHANNELS[fmt]
    out = torch.full((len(indices), 16, c), float("nan"), dtype=torch_dtype, device="cuda")
    words = torch.from_numpy(blocks_to_int32(flat)).cuda()
    idx = torch.from_numpy(indices).cuda()
    rc = lib.ntc_bc_decode_gather_cuda(words.data_ptr(), idx.data_ptr(), len(indices), FORMAT_CODES[fmt], code,
                                       out.data_ptr(), None)
    torch.cuda.synchronize()
    assert rc == 0
    per_block = _host_values(fmt, flat[np.maximum(indices, 0)].reshape(1, len(indices), 1, -1), np_dtype)[0]
    # A [4n, 4, C] image of the blocks stacked vertically -> [n, 16, C] texels of each block, row-major.
    expected = per_block.reshape(len(indices), 16, c).copy()
    expected[indices < 0] = 0
    bits = np.uint16 if np_dtype == np.float16 else np.uint32
    assert np.array_equal(out.cpu().numpy().view(bits), expected.view(bits))


def test_bad_arguments_return_error_codes(lib):
    words = torch.zeros((1, 1, 1, 4), dtype=torch.int32, device="cuda")
    out = torch.zeros((1, 4, 4, 4), dtype=torch.float32, device="cuda")
    args = (words.data_ptr(), 1, 1, 1)
    assert lib.ntc_bc_decode_cuda(*args, 6, 0, 0, out.data_ptr(), None) == -2
    assert lib.ntc_bc_decode_cuda(*args, 5, 2, 0, out.data_ptr(), None) == -4
    assert lib.ntc_bc_decode_cuda(*args, 5, 0, 2, out.data_ptr(), None) == -4
    assert lib.ntc_bc_decode_cuda(words.data_ptr(), 0, 1, 1, 5, 0, 0, out.data_ptr(), None) == -3
    assert lib.ntc_bc_decode_cuda(*args, 5, 0, 0, out.data_ptr() + 4, None) == -5
    assert lib.ntc_bc_decode_cuda(None, 1, 1, 1, 5, 0, 0, out.data_ptr(), None) == -1
