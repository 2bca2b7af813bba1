"""The demo's engine builds (every zoo model, fp16, the default RTX targets) with the local executor at --jobs 1 and
--jobs N in the same run, from the same exported ONNX into fresh output folders; prints JSON with the ratio.

    python scripts/bench_build_executor.py [--jobs 2] [--repeat 3] [--ray] [--out bench-executor.json]

Timings are wall-clock on whatever else the machine is doing: quote the ratio with the machine and load it records.
`--ray` adds a run on a local Ray instance (startup included) and checks it builds the same manifest entries.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from ntc_export.backend.onnx.export import export_model
from ntc_export.backend.trt.profiles import DEFAULT_BATCH, DEFAULT_GRID
from ntc_export.backend.trt.targets import DEFAULT_TARGETS, get_target
from ntc_export.models import load
from ntc_export.pipeline.executor import BuildJob, run_builds
from ntc_export.pipeline.main_job import has_window_attention
from ntc_export.util.paths import ZOO_DIR


def demo_jobs(work: Path) -> list[BuildJob]:
    """One job per (zoo model, RTX default target) at fp16, each target's lowering exported once."""
    targets = [get_target(t) for t in DEFAULT_TARGETS if get_target(t).backend == "tensorrt_rtx"]
    jobs = []
    for ckpt in sorted(ZOO_DIR.glob("*.pt")):
        module = load(ckpt)
        profiles = module.input_profiles(DEFAULT_BATCH, DEFAULT_GRID)
        for lowering in sorted({t.attention for t in targets} if has_window_attention(module) else {"decomposed"}):
            onnx = export_model(module, work / "onnx" / ckpt.stem / lowering, ["fp16"], attention=lowering,
                                name=ckpt.stem)["fp16"]
            jobs += [BuildJob(str(onnx), t.name, "fp16", profiles=profiles, name=ckpt.stem)
                     for t in targets if not has_window_attention(module) or t.attention == lowering]
    return jobs


def timed(jobs, out: Path, executor: str, workers: int) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    entries = run_builds(jobs, out, executor, workers)
    return time.perf_counter() - start, entries


def manifest_keys(out: Path) -> list[tuple]:
    """What identifies a manifest entry and the engine it names (engine bytes may differ between two builds)."""
    entries = json.loads((out / "engines" / "manifest.json").read_text())["engines"]
    return sorted((e["model"], e["target"], e["precision"], e["cache_key"]) for e in entries)


def builder_seconds(out: Path) -> float:
    """Sum of the builds' own times (build_serialized_network, per the manifest): when two concurrent builds each
    take twice as long, the workers got no more CPU than one (a busy shared machine)."""
    entries = json.loads((out / "engines" / "manifest.json").read_text())["engines"]
    return round(sum(e["build_seconds"] for e in entries), 2)


def identical_engines(a: Path, b: Path) -> int:
    shas = [{(e["model"], e["target"], e["precision"]): e["sha256"]
             for e in json.loads((d / "engines" / "manifest.json").read_text())["engines"]} for d in (a, b)]
    return sum(shas[0][k] == shas[1].get(k) for k in shas[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--ray", action="store_true", help="also build on a local Ray instance")
    parser.add_argument("--repeat", type=int, default=1, help="alternate the two runs this many times (medians)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here as well")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-executor-") as tmp:
        work = Path(tmp)
        jobs = demo_jobs(work)
        load_before = os.getloadavg()
        serial, parallel = [], []
        for i in range(args.repeat):  # alternating, so a change in the machine's load hits both alike
            serial.append(timed(jobs, work / f"jobs1-{i}", "local", 1)[0])
            parallel.append(timed(jobs, work / f"jobs{args.jobs}-{i}", "local", args.jobs)[0])
        shutil.copytree(work / "jobs1-0", work / "jobs1")
        shutil.copytree(work / f"jobs{args.jobs}-0", work / f"jobs{args.jobs}")
        result = {
            "what": "demo engine builds (zoo x default RTX targets, fp16), TensorRT-RTX AOT, from the same ONNX",
            "builds": len(jobs),
            "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                        "load_avg_before": load_before},
            "local_jobs1_s": [round(t, 2) for t in serial],
            f"local_jobs{args.jobs}_s": [round(t, 2) for t in parallel],
            "speedup_jobs1_over_jobsN": round(statistics.median(serial) / statistics.median(parallel), 3),
            "builder_seconds_sum": {"jobs1": [builder_seconds(work / f"jobs1-{i}") for i in range(args.repeat)],
                                    f"jobs{args.jobs}": [builder_seconds(work / f"jobs{args.jobs}-{i}")
                                                         for i in range(args.repeat)]},
            "same_manifest_entries": manifest_keys(work / "jobs1") == manifest_keys(work / f"jobs{args.jobs}"),
            "bit_identical_engines": identical_engines(work / "jobs1", work / f"jobs{args.jobs}"),
        }
        if args.ray:
            ray_s, _ = timed(jobs, work / "ray", "ray", args.jobs)
            result["ray_local_s"] = round(ray_s, 2)
            result["ray_same_manifest_entries"] = manifest_keys(work / "jobs1") == manifest_keys(work / "ray")
        result["load_avg_after"] = os.getloadavg()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
