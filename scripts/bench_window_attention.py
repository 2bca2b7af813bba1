"""Benchmark the ntc::WindowAttention CUDA kernel against PyTorch SDPA with an additive bias and a naive Swin block.

Window 8, head dim 32, fp16; heads 3/6/12; BW (batch * windows) 1k/8k/64k; 64 windows per image share the shift mask.
  ours               ntc_window_attention_cuda (bias gathered from the table inside the kernel)
  sdpa               scaled_dot_product_attention with bias + mask pre-materialised as attn_mask [BW, heads, T, T]
  sdpa_build_bias    the same, plus building that attn_mask from the table and mask in every call (what a model does)
  naive              Swin's matmul -> + bias + mask -> softmax -> matmul
All three produce the contract's [BW, T, heads * hd] output. CUDA-event timing after warmup; writes JSON to --out.

    python scripts/bench_window_attention.py --out bench_window_attention.json
"""

import argparse
import ctypes
import statistics
import sys

import torch
import torch.nn.functional as F
from ntc_export.util.atomic import write_json

WINDOW, HEAD_DIM, WINDOWS_PER_IMAGE = 8, 32, 64


def swin_rel_index(window, device):
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return (rel[..., 0] * (2 * window - 1) + rel[..., 1]).reshape(-1).to(device)


def time_ms(fn, warmup, iters, repeats=5):
    """Median over `repeats` of the mean CUDA-event time of `iters` back-to-back calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        stop.record()
        stop.synchronize()
        samples.append(start.elapsed_time(stop) / iters)
    return statistics.median(samples)


def kernel_fn():
    from ntc_export.native.kernels import kernels_library

    fn = kernels_library().ntc_window_attention_cuda
    fn.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int] * 5 + [ctypes.c_float, ctypes.c_int, ctypes.c_void_p,
                                                                  ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


def bench_case(fn, heads, bw, warmup, iters):
    t, c, scale = WINDOW * WINDOW, heads * HEAD_DIM, HEAD_DIM ** -0.5
    n_images = max(1, bw // WINDOWS_PER_IMAGE)
    bw = n_images * WINDOWS_PER_IMAGE
    dev = torch.device("cuda")
    q, k, v = (torch.randn(bw, heads, t, HEAD_DIM, device=dev, dtype=torch.float16) for _ in range(3))
    table = torch.randn((2 * WINDOW - 1) ** 2, heads, device=dev, dtype=torch.float16)
    mask = torch.where(torch.rand(WINDOWS_PER_IMAGE, t, t, device=dev) < 0.3, -10000.0, 0.0).to(torch.float16)
    mask[:, torch.arange(t), torch.arange(t)] = 0
    rel = swin_rel_index(WINDOW, dev)
    out = torch.empty(bw, t, c, device=dev, dtype=torch.float16)
    stream = torch.cuda.current_stream().cuda_stream

    def ours():
        rc = fn(q.data_ptr(), k.data_ptr(), v.data_ptr(), table.data_ptr(), mask.data_ptr(), bw, WINDOWS_PER_IMAGE,
                heads, WINDOW, HEAD_DIM, scale, 1, out.data_ptr(), stream)
        if rc != 0:
            raise RuntimeError(f"ntc_window_attention_cuda returned {rc}")
        return out

    def build_attn_mask():
        bias = table[rel].view(t, t, heads).permute(2, 0, 1)
        full = mask.view(1, WINDOWS_PER_IMAGE, 1, t, t) + bias.view(1, 1, heads, t, t)
        return full.expand(n_images, -1, -1, -1, -1).reshape(bw, heads, t, t)

    attn_mask = build_attn_mask()

    def sdpa():
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)
        return o.transpose(1, 2).reshape(bw, t, c)

    def sdpa_build_bias():
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=build_attn_mask(), scale=scale)
        return o.transpose(1, 2).reshape(bw, t, c)

    def naive():
        bias = table[rel].view(t, t, heads).permute(2, 0, 1)
        attn = (q * scale) @ k.transpose(-2, -1) + bias.unsqueeze(0)
        attn = attn.view(n_images, WINDOWS_PER_IMAGE, heads, t, t) + mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(bw, heads, t, t).softmax(dim=-1)
        return (attn @ v).transpose(1, 2).reshape(bw, t, c)

    with torch.no_grad():
        reference = naive().float()
        errors = {name: (f().float() - reference).abs().max().item() for name, f in
                  [("ours", ours), ("sdpa", sdpa), ("sdpa_build_bias", sdpa_build_bias)]}
        ms = {name: time_ms(f, warmup, iters) for name, f in
              [("ours", ours), ("sdpa", sdpa), ("sdpa_build_bias", sdpa_build_bias), ("naive", naive)]}
    row = {"heads": heads, "bw": bw, "window": WINDOW, "head_dim": HEAD_DIM, "dtype": "float16",
           "ms": ms, "max_abs_vs_naive": errors,
           "speedup": {f"vs_{name}": ms[name] / ms["ours"] for name in ("sdpa", "sdpa_build_bias", "naive")}}
    del q, k, v, attn_mask, out
    torch.cuda.empty_cache()
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--heads", type=int, nargs="+", default=[3, 6, 12])
    ap.add_argument("--bw", type=int, nargs="+", default=[1024, 8192, 65536], help="batch * windows")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args(argv)

    if not torch.cuda.is_available():
        why = "no CUDA device: the window-attention benchmark needs a GPU"
        print(why, file=sys.stderr)
        write_json(args.out, {"skipped": why})
        return 0

    fn = kernel_fn()
    rows = []
    for heads in args.heads:
        for bw in args.bw:
            row = bench_case(fn, heads, bw, args.warmup, args.iters)
            print(f"heads {heads:2d} bw {row['bw']:6d}: ours {row['ms']['ours']:.3f} ms, "
                  f"sdpa x{row['speedup']['vs_sdpa']:.2f}, sdpa+bias build x{row['speedup']['vs_sdpa_build_bias']:.2f}, "
                  f"naive x{row['speedup']['vs_naive']:.2f}, max abs vs naive {row['max_abs_vs_naive']['ours']:.2e}")
            rows.append(row)
    big = [r for r in rows if r["bw"] >= 8192]
    goals = {
        "ours_2x_sdpa_build_bias_at_8k_plus": all(r["speedup"]["vs_sdpa_build_bias"] >= 2 for r in big),
        "ours_2x_sdpa_prebuilt_mask_at_8k_plus": all(r["speedup"]["vs_sdpa"] >= 2 for r in big),
        "ours_4x_naive_at_8k_plus": all(r["speedup"]["vs_naive"] >= 4 for r in big),
    }
    write_json(args.out, {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                          "cuda": torch.version.cuda, "timing": "CUDA events, median of 5 x mean of --iters calls",
                          "warmup": args.warmup, "iters": args.iters, "results": rows, "goals": goals})
    print(f"goals: {goals}\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
