"""Benchmark the CUDA BC decoder: GB/s (bytes read + written) per format vs a device-to-device copy of the same
bytes, a PyTorch reference decode (BC4/BC5) and the hardware texture path, all in the same run. Writes JSON to --out.

Usage: python scripts/bench_bc_decode.py --out bench_bc_decode.json [--size 4096] [--dtype float16] [--iters 50]
"""

import argparse
import ctypes
import sys

import numpy as np

GOALS = {"bc1": 0.85, "bc4": 0.85, "bc5": 0.85, "bc6h_uf16": 0.60, "bc6h_sf16": 0.60, "bc7": 0.60}


def _write(path, obj):
    from ntc_export.util.atomic import write_json
    write_json(path, obj)


def _time_ms(torch, fn, iters: int) -> float:
    """Median milliseconds of fn() over iters runs, CUDA events around each."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return float(np.median(times))


def torch_bc4_decode(torch, words: "torch.Tensor") -> "torch.Tensor":
    """Vectorised BC4 UNORM reference: int32 [N, 2] words -> uint8 [N, 16] (same truncating rule as the kernel)."""
    w = words.to(torch.int64) & 0xFFFFFFFF
    bits = w[:, 0] | (w[:, 1] << 32)
    e0, e1 = (bits & 0xFF).unsqueeze(1), ((bits >> 8) & 0xFF).unsqueeze(1)
    k = torch.arange(8, device=words.device).unsqueeze(0)
    six = ((8 - k) * e0 + (k - 1) * e1) // 7
    four = ((6 - k) * e0 + (k - 1) * e1) // 5
    four = torch.where(k == 6, torch.zeros_like(four), torch.where(k == 7, torch.full_like(four, 255), four))
    palette = torch.where(e0 > e1, six, four)
    palette[:, 0:1], palette[:, 1:2] = e0, e1
    shifts = 16 + 3 * torch.arange(16, device=words.device)
    index = (bits.unsqueeze(1) >> shifts) & 7
    return torch.gather(palette, 1, index).to(torch.uint8)


def torch_reference(torch, fmt: str, words, dtype):
    if fmt == "bc4":
        values = torch_bc4_decode(torch, words)
    else:  # bc5: two BC4 halves
        values = torch.stack([torch_bc4_decode(torch, words[:, :2]), torch_bc4_decode(torch, words[:, 2:])], dim=-1)
    return (values.to(torch.float32) / 255).to(dtype)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=4096, help="image side in texels (multiple of 4)")
    ap.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    ap.add_argument("--layout", choices=["nchw", "tokens"], default="tokens")
    ap.add_argument("--iters", type=int, default=50)
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        torch = None
    if torch is None or not torch.cuda.is_available():
        reason = "no CUDA device: the BC decode benchmark needs a GPU"
        print(reason, file=sys.stderr)
        _write(args.out, {"skipped": reason})
        return 0
    from ntc_export.codec.decode import blocks_to_int32
    from ntc_export.codec.formats import TABLE
    from ntc_export.native.kernels import kernels_library

    lib = kernels_library()
    lib.ntc_bc_decode_cuda.argtypes = [ctypes.c_void_p] + [ctypes.c_int] * 6 + [ctypes.c_void_p, ctypes.c_void_p]
    lib.ntc_bc_texture_create.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                          ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
    lib.ntc_bc_texture_decode.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    lib.ntc_bc_texture_destroy.argtypes = [ctypes.c_void_p]
    dtype = getattr(torch, args.dtype)
    dtype_code, elem = (1, 2) if args.dtype == "float16" else (0, 4)
    layout_code = 0 if args.layout == "nchw" else 1
    by = bx = args.size // 4
    stream = torch.cuda.current_stream().cuda_stream
    rng = np.random.default_rng(0)
    results = {"device": torch.cuda.get_device_name(), "size": args.size, "dtype": args.dtype,
               "layout": args.layout, "iters": args.iters, "formats": {}}
    for fmt, spec in TABLE.items():
        code, block_bytes, channels = spec.code, spec.block_bytes, spec.channels
        blocks = rng.integers(0, 256, size=(by, bx, block_bytes), dtype=np.uint8)
        words = torch.from_numpy(blocks_to_int32(blocks)).cuda()
        n_blocks = by * bx
        read_bytes, write_bytes = n_blocks * block_bytes, n_blocks * 16 * channels * elem
        moved = read_bytes + write_bytes
        shape = (1, channels, 4 * by, 4 * bx) if layout_code == 0 else (1, 16 * n_blocks, channels)
        out = torch.empty(shape, dtype=dtype, device="cuda")

        def run_kernel():
            rc = lib.ntc_bc_decode_cuda(words.data_ptr(), 1, by, bx, code, layout_code, dtype_code, out.data_ptr(),
                                        stream)
            if rc != 0:
                raise RuntimeError(f"ntc_bc_decode_cuda({fmt}) returned {rc}")

        kernel_ms = _time_ms(torch, run_kernel, args.iters)
        # The copy moves the same bytes: it reads and writes half of them each.
        src = torch.empty(moved // 2, dtype=torch.uint8, device="cuda")
        dst = torch.empty_like(src)
        copy_ms = _time_ms(torch, lambda: dst.copy_(src), args.iters)
        entry = {"kernel_ms": kernel_ms, "kernel_gbps": moved / kernel_ms / 1e6, "copy_ms": copy_ms,
                 "copy_gbps": 2 * (moved // 2) / copy_ms / 1e6, "bytes_read": read_bytes, "bytes_written": write_bytes}
        entry["ratio_vs_copy"] = entry["kernel_gbps"] / entry["copy_gbps"]
        entry["goal_ratio"] = GOALS[fmt]
        entry["meets_goal"] = entry["ratio_vs_copy"] >= GOALS[fmt]
        tokens = out if layout_code == 1 else out.permute(0, 2, 3, 1).reshape(1, -1, channels)
        if fmt in ("bc4", "bc5"):
            flat_words = words.reshape(n_blocks, -1)
            ref_ms = _time_ms(torch, lambda: torch_reference(torch, fmt, flat_words, dtype), max(5, args.iters // 5))
            entry["torch_ref_gbps"] = moved / ref_ms / 1e6
            ref = torch_reference(torch, fmt, flat_words, dtype).reshape(by, bx, 4, 4, channels)
            ref = ref.permute(0, 2, 1, 3, 4).reshape(1, -1, channels)
            entry["torch_ref_matches_kernel"] = bool(torch.equal(ref, tokens.reshape(1, -1, channels)))
        handle = ctypes.c_void_p()
        rc = lib.ntc_bc_texture_create(words.data_ptr(), by, bx, code, ctypes.byref(handle), stream)
        if rc == 0:
            tex_out = torch.empty((4 * by, 4 * bx, channels), dtype=dtype, device="cuda")
            tex_ms = _time_ms(torch, lambda: lib.ntc_bc_texture_decode(handle, dtype_code, tex_out.data_ptr(), stream),
                              args.iters)
            entry["texture_gbps"] = moved / tex_ms / 1e6
            diff = (tex_out.reshape(1, -1, channels).float() - tokens.reshape(1, -1, channels).float()).abs()
            entry["texture_max_abs_diff_vs_kernel"] = float(diff.nan_to_num(posinf=1e9).max())
            lib.ntc_bc_texture_destroy(handle)
        else:
            entry["texture_error"] = rc
        results["formats"][fmt] = entry
        print(f"{fmt:10s} kernel {entry['kernel_gbps']:8.1f} GB/s  copy {entry['copy_gbps']:8.1f} GB/s  "
              f"ratio {entry['ratio_vs_copy']:.2f} (goal {GOALS[fmt]:.2f})  texture {entry.get('texture_gbps', 0):8.1f}")
        del words, out, src, dst
    _write(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
