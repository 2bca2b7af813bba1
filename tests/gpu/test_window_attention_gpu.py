"""ntc::WindowAttention v1 CUDA kernel (libntc_kernels.so via ctypes) against a float64 PyTorch reference."""

import ctypes

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

DTYPE_CODE = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 2e-2}


@pytest.fixture(scope="module")
def lib():
    from ntc_export.native.kernels import kernels_library

    lib = kernels_library()  # a missing library fails with the build command in the message
    lib.ntc_window_attention_cuda.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int] * 5 + [
        ctypes.c_float, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    lib.ntc_window_attention_cuda.restype = ctypes.c_int
    lib.ntc_window_attention_cuda_uses_mma.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int] * 3
    lib.ntc_window_attention_cuda_uses_mma.restype = ctypes.c_int
    return lib


def _ptr(t):
    return None if t is None else t.data_ptr()


def run_kernel(lib, q, k, v, table, mask, window, scale, n_windows=None, dtype_code=None):
    bw, heads, tokens, hd = q.shape
    out = torch.full((bw, tokens, heads * hd), float("nan"), dtype=q.dtype, device=q.device)
    nw = n_windows if n_windows is not None else (mask.shape[0] if mask is not None else 0)
    code = DTYPE_CODE[q.dtype] if dtype_code is None else dtype_code
    stream = torch.cuda.current_stream().cuda_stream
    rc = lib.ntc_window_attention_cuda(_ptr(q), _ptr(k), _ptr(v), _ptr(table), _ptr(mask), bw, nw, heads, window,
                                       hd, scale, code, _ptr(out), stream)
    torch.cuda.synchronize()
    return rc, out


def swin_rel_index(window, device):
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return (rel[..., 0] * (2 * window - 1) + rel[..., 1]).to(device)


def reference(q, k, v, table, mask, window, scale):
    """softmax(scale * q k^T + bias[rel_index] + mask[b % nW]) v in float64 from the same (rounded) inputs."""
    q, k, v = q.double(), k.double(), v.double()
    bw, heads, t, hd = q.shape
    attn = scale * q @ k.transpose(-1, -2)
    if table is not None:
        bias = table.double()[swin_rel_index(window, q.device).reshape(-1)].reshape(t, t, heads)
        attn = attn + bias.permute(2, 0, 1)[None]
    if mask is not None:
        attn = attn + mask.double()[torch.arange(bw, device=q.device) % mask.shape[0]][:, None]
    return (torch.softmax(attn, dim=-1) @ v).transpose(1, 2).reshape(bw, t, heads * hd)


def make_inputs(bw, heads, window, hd, n_windows, dtype, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    t = window * window
    q, k, v = (torch.randn(bw, heads, t, hd, generator=g, device="cuda").to(dtype) for _ in range(3))
    table = torch.randn((2 * window - 1) ** 2, heads, generator=g, device="cuda").to(dtype)
    mask = None
    if n_windows:
        blocked = torch.rand(n_windows, t, t, generator=g, device="cuda") < 0.4
        blocked[:, torch.arange(t), torch.arange(t)] = False
        mask = torch.where(blocked, -10000.0, 0.0).to(dtype)
    return q, k, v, table, mask


def check(lib, q, k, v, table, mask, window, scale, **kw):
    rc, out = run_kernel(lib, q, k, v, table, mask, window, scale, **kw)
    assert rc == 0
    err = (out.double() - reference(q, k, v, table, mask, window, scale)).abs().max().item()
    assert err <= TOLERANCE[q.dtype], f"max abs error {err}"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("window", [7, 8])
@pytest.mark.parametrize("hd", [32, 64])
@pytest.mark.parametrize("n_windows", [0, 4])
def test_tensor_core_path(lib, dtype, window, hd, n_windows):
    q, k, v, table, mask = make_inputs(13, 3, window, hd, n_windows, dtype, seed=window * hd + n_windows)
    out_probe = torch.empty(1, dtype=dtype, device="cuda")
    assert lib.ntc_window_attention_cuda_uses_mma(_ptr(q), _ptr(k), _ptr(v), _ptr(out_probe), window, hd,
                                                  DTYPE_CODE[dtype]) == 1
    check(lib, q, k, v, table, mask, window, hd ** -0.5)


def test_many_windows_on_a_side_stream(lib):
    q, k, v, table, mask = make_inputs(1027, 5, 8, 32, 64, torch.float16, seed=11)
    with torch.cuda.stream(torch.cuda.Stream()):
        check(lib, q, k, v, table, mask, 8, 32 ** -0.5)


@pytest.mark.parametrize("dtype,window,hd", [
    (torch.float32, 8, 32), (torch.float32, 7, 64), (torch.float16, 5, 24), (torch.bfloat16, 12, 16),
    (torch.float16, 4, 40)])
def test_general_path(lib, dtype, window, hd):
    q, k, v, table, mask = make_inputs(7, 2, window, hd, 3, dtype, seed=window + hd)
    check(lib, q, k, v, table, mask, window, hd ** -0.5)


def test_unaligned_inputs_take_the_general_path(lib):
    q, k, v, table, mask = make_inputs(5, 2, 7, 32, 2, torch.float16, seed=3)
    shifted = [torch.empty(x.numel() + 1, dtype=x.dtype, device="cuda")[1:].view_as(x).copy_(x) for x in (q, k, v)]
    assert shifted[0].data_ptr() % 16 != 0
    assert lib.ntc_window_attention_cuda_uses_mma(*map(_ptr, shifted), _ptr(q), 7, 32, 1) == 0
    check(lib, *shifted, table, mask, 7, 32 ** -0.5)


def test_no_bias_table(lib):
    q, k, v, _, mask = make_inputs(6, 2, 8, 64, 3, torch.float16, seed=5)
    check(lib, q, k, v, None, mask, 8, 0.125)


def test_bad_arguments(lib):
    q, k, v, table, mask = make_inputs(2, 1, 7, 32, 2, torch.float16, seed=1)
    assert run_kernel(lib, q, k, v, table, mask, 7, 1.0, dtype_code=5)[0] == -1
    assert run_kernel(lib, q, k, v, table, mask, 7, 1.0, n_windows=0)[0] == -1
    rc, out = run_kernel(lib, q[:0], k[:0], v[:0], table, mask, 7, 1.0)
    assert rc == 0 and out.numel() == 0
