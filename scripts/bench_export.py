#!/usr/bin/env python3
"""ONNX Runtime CPU vs PyTorch eager CPU latency, per zoo model, batch 1 and 8, in one process -> JSON.

    python scripts/bench_export.py [--out bench_export.json] [--repeats 30]

Both runtimes see the same inputs made from real tokens (built-in digits validation split, 224 px; BC blocks for
compressors) and the same thread count.
Figures are medians; the ratio (torch / ORT) > 1 means ONNX Runtime is faster.
"""

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ntc_export.backend.onnx.export import export_model
from ntc_export.backend.onnxrt.runner import OrtRunner
from ntc_export.data.tokens import builtin_tokens
from ntc_export.evaluate.validate import model_feeds
from ntc_export.models import load
from ntc_export.util.hashing import tool_versions
from ntc_export.util.paths import ZOO_DIR


def median_ms(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench_export.json"))
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    threads = torch.get_num_threads()
    tokens = builtin_tokens("digits", 224, split="val").patch_tokens
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(ZOO_DIR.glob("*.pt")):
            module = load(path)
            onnx_path = export_model(module, Path(tmp) / path.stem, ("fp32",))["fp32"]
            feeds = {b: {k: np.ascontiguousarray(v) for k, v in model_feeds(module, tokens[:b]).items()}
                     for b in (1, 8)}
            torch_ms = {}
            with torch.inference_mode():  # before the ORT session exists: its spinning threads would steal the cores
                for batch, f in feeds.items():
                    args_t = [torch.from_numpy(f[n]) for n in module.input_names]
                    torch_ms[batch] = median_ms(lambda: module(*args_t), args.repeats)
            runner = OrtRunner(onnx_path, providers=["CPUExecutionProvider"], threads=threads)
            for batch, f in feeds.items():
                ort_ms = median_ms(lambda: runner.run(f), args.repeats)
                results[f"{path.stem}/b{batch}"] = {
                    "model": path.stem, "batch": batch, "torch_eager_ms": round(torch_ms[batch], 3),
                    "onnxruntime_ms": round(ort_ms, 3), "speedup_ort_over_torch": round(torch_ms[batch] / ort_ms, 3)}
                print(json.dumps(results[f"{path.stem}/b{batch}"]))
            del runner
    report = {"machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": threads},
              "versions": tool_versions(), "results": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
