"""One JSON for a GPU check run: device, driver/CUDA, SM, commit, GPU test counts, sanitizer errors and every
benchmark figure with its same-run baseline and goal. Reads what scripts/gpu_check.sh wrote to its output folder and
writes OUT/benchmarks/gpu/<device>-<commit>.json (the file to commit) plus a one-line summary per goal.

    python scripts/gpu_summary.py --dir gpu-out --commit abc1234
"""

import argparse
import csv
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown-device"


def read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def device_facts(folder: Path) -> dict:
    """The first GPU's name, driver, memory, SM (device.csv, nvidia-smi's CSV) and nvcc's release (nvcc.txt)."""
    facts = {}
    if (folder / "device.csv").exists():
        rows = list(csv.reader((folder / "device.csv").read_text().splitlines()))
        if len(rows) > 1:
            facts = {h.strip().split(" ")[0]: v.strip() for h, v in zip(rows[0], rows[1])}
    nvcc = (folder / "nvcc.txt").read_text() if (folder / "nvcc.txt").exists() else ""
    release = re.search(r"release ([\d.]+)", nvcc)
    return {"name": facts.get("name", "unknown"), "driver": facts.get("driver_version"),
            "memory": facts.get("memory.total"), "sm": facts.get("compute_cap"),
            "nvcc": release.group(1) if release else None}


def test_counts(path: Path) -> dict | None:
    """pytest's JUnit XML -> {tests, failures, errors, skipped, failed: [names]}."""
    if not path.exists():
        return None
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    failed = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")} | {"failed": failed}


def sanitizer(path: Path) -> dict | None:
    """compute-sanitizer's log -> {errors (its ERROR SUMMARY lines, summed over processes), racecheck hazards,
    summaries: how many processes reported}."""
    if not path.exists():
        return None
    counts = [int(n) for n in re.findall(r"ERROR SUMMARY: (\d+) error", path.read_text())]
    hazards = [int(n) for n in re.findall(r"RACECHECK SUMMARY: (\d+) hazard", path.read_text())]
    return {"errors": sum(counts), "hazards": sum(hazards), "summaries": len(counts)}


def goals(summary: dict) -> list[str]:
    """The issue's must-show goals, each as one line: met or missed and by how much."""
    lines = []
    for name, bench in summary["bc_decode"].items():
        for fmt, e in (bench or {}).get("formats", {}).items():
            beat = ("texture path: " + ("beaten" if e["kernel_gbps"] > e["texture_gbps"] else "NOT beaten")
                    if "texture_gbps" in e else f"texture path error {e.get('texture_error')}")
            lines.append(f"bc {name} {fmt}: {e['kernel_gbps']:.0f} GB/s = {e['ratio_vs_copy']:.2f} of copy "
                         f"(goal {e['goal_ratio']:.2f}: {'met' if e['meets_goal'] else 'MISSED'}); {beat}")
    att = summary["window_attention"] or {}
    for row in att.get("results", []):
        if row["bw"] >= 8192:
            s = row["speedup"]
            lines.append(f"attention heads {row['heads']} bw {row['bw']}: x{s['vs_sdpa']:.2f} SDPA (goal 2), "
                         f"x{s['vs_naive']:.2f} naive (goal 4), max abs {row['max_abs_vs_naive']['ours']:.1e} "
                         f"(goal 2e-3)")
    for tool in ("memcheck", "racecheck"):
        s = summary["sanitizer"].get(tool)
        lines.append(f"{tool}: " + ("not run" if s is None else f"{s['errors']} errors, {s['hazards']} hazards "
                                                                  f"({s['summaries']} process summaries)"))
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, required=True, help="gpu_check.sh's output folder")
    ap.add_argument("--commit", required=True, help="short commit of the checked tree")
    args = ap.parse_args(argv)
    d = args.dir
    device, torch_versions = device_facts(d), read_json(d / "torch.json") or {}
    summary = {
        "device": device, "commit": args.commit, "torch_cuda": torch_versions.get("cuda"),
        "torch": torch_versions.get("torch"),
        "gpu_tests": test_counts(d / "gpu_tests.xml"),
        "sanitizer": {"memcheck": sanitizer(d / "memcheck.log"), "racecheck": sanitizer(d / "racecheck.log")},
        "bc_decode": {p.stem.removeprefix("bench_bc_decode").strip("_") or "fp16_tokens": read_json(p)
                      for p in sorted(d.glob("bench_bc_decode*.json"))},
        "window_attention": read_json(d / "bench_window_attention.json"),
    }
    summary["goals"] = goals(summary)
    out = d / "benchmarks" / "gpu" / f"{slug(device['name'])}-{args.commit}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print("\n".join(summary["goals"]) + f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
