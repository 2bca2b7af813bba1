"""Latency: ONNX Runtime CPU percentiles per batch size, TensorRT engines only where they can run, never guessed."""

import platform
import time
from pathlib import Path

import numpy as np

from ..backend.onnx.inspect import has_custom_ops
from ..util.errors import NtcError


def cpu_model() -> str:
    """The CPU's model string (from /proc/cpuinfo where present) and its logical core count."""
    import os

    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name or platform.processor() or platform.machine()} ({os.cpu_count()} logical cores)"


# (/proc/cpuinfo flag, name, the CPUID feature numpy must also see): /proc/cpuinfo describes the host, while an
# emulator or VM may hide features from this process; numpy's runtime dispatch reads CPUID as ORT's kernels do.
ISA_FLAGS = (("amx_int8", "AMX", "AVX512F"), ("avx512_vnni", "AVX-512 VNNI", "AVX512VNNI"),
             ("avx_vnni", "AVX-VNNI", "AVX2"), ("avx2", "AVX2", "AVX2"))


def cpu_isa() -> str:
    """The best int8 instruction set the CPU offers this process (what ORT's fused int8 kernels run on)."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    seen = (np._core if hasattr(np, "_core") else np.core)._multiarray_umath.__cpu_features__  # numpy 2 / 1
    return next((name for flag, name, feature in ISA_FLAGS if flag in flags and seen.get(feature, False)),
                platform.machine())


def batch_feeds(feeds: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """The first `batch` samples of every feed, tiled when the feeds hold fewer."""
    out = {}
    for name, x in feeds.items():
        x = np.asarray(x)
        if len(x) == 0:
            raise NtcError(f"feed {name!r} has no samples to time")
        reps = -(-batch // len(x))
        out[name] = np.ascontiguousarray(np.concatenate([x] * reps)[:batch] if reps > 1 else x[:batch])
    return out


def time_calls(fn, repeats: int, budget_s: float, warmup: int = 2) -> list[float]:
    """Wall times in ms of `fn()`: `warmup` untimed calls, then up to `repeats` timed calls within `budget_s`
    (at least 3 timed calls)."""
    for _ in range(warmup):
        fn()
    times = []
    deadline = time.perf_counter() + budget_s
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def percentiles(times_ms: list[float]) -> dict:
    a = np.asarray(times_ms, dtype=np.float64)
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)), "runs": int(len(a))}


def measure_latency(onnx_path, feeds: dict[str, np.ndarray], batches=(1, 8), repeats: int = 30,
                    budget_s: float = 0.4, threads: int | None = None) -> dict:
    """ONNX Runtime latency of `onnx_path` at each batch size: {"b1": {p50_ms, p90_ms, runs}, ..., device, backend,
    provider}. Each batch size gets at most `budget_s` of timed runs after two warm-up runs. Timed as deployed: with
    ORT's fused int8 kernels, so the device names the CPU's int8 ISA."""
    from ..backend.onnxrt.runner import OrtRunner

    path = Path(onnx_path)
    if not path.is_file():
        raise NtcError(f"{path}: no such ONNX file to time")
    if not batches or any(int(b) < 1 for b in batches):
        raise NtcError(f"batch sizes must be positive integers; got {list(batches)}")
    # Register custom ops only where the graph has them: registration costs a session retry in this ORT.
    runner = OrtRunner(path, threads=threads, custom_ops=has_custom_ops(path), fused_qdq=True)
    missing = [n for n in runner.input_names if n not in feeds]
    if missing:
        raise NtcError(f"{path.name} needs input(s) {', '.join(missing)} that the feeds lack")
    result = {}
    for b in batches:
        fb = batch_feeds({n: feeds[n] for n in runner.input_names}, int(b))
        result[f"b{int(b)}"] = percentiles(time_calls(lambda fb=fb: runner.run(fb), repeats, budget_s))
    provider = runner.providers[0]
    cpu = f"{cpu_model()}, {cpu_isa()}; ORT fused int8 kernels"
    result.update({"device": cpu if provider == "CPUExecutionProvider" else _gpu_name(),
                   "backend": "onnxruntime", "provider": provider, "executed": True})
    return result


def _gpu_name() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0)
    except Exception:  # any failure here only loses the label
        return "CUDA device"


def engine_latency(out_dir, entry: dict, feeds: dict[str, np.ndarray], batches=(1, 8), repeats: int = 30,
                   budget_s: float = 0.4) -> dict:
    """TensorRT engine latency for a manifest entry where this machine can run it, else
    {"executed": False, "reason": ...} (no number is ever estimated)."""
    from ..backend.trt.manifest import ManifestEntry
    from ..backend.trt.runner import TrtRunner

    if not ManifestEntry.parse(entry).is_engine or not entry.get("engine"):
        return {"executed": False, "reason": entry.get("reason") or "no engine was built for this entry"}
    runner = TrtRunner(Path(out_dir) / "engines" / entry["engine"], entry)
    ok, why = runner.can_run()
    if not ok:
        return {"executed": False, "reason": why}
    result = {}
    for b in batches:
        fb = batch_feeds(feeds, int(b))
        result[f"b{int(b)}"] = percentiles(time_calls(lambda fb=fb: runner.run(fb), repeats, budget_s))
    result.update({"device": _gpu_name(), "backend": entry.get("backend", "tensorrt_rtx"),
                   "provider": f"{entry.get('backend')} {entry.get('backend_version')}", "executed": True})
    return result
