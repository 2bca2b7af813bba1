#!/usr/bin/env python3
"""Every zoo graph (and its extra graphs) at every sweep grid: one fp32 and one fp16 ONNX file per graph, run by ONNX
Runtime against PyTorch on real ViT tokens of photographs at each grid -> JSON and a markdown table.

    python scripts/sweep_grids.py [--out sweep_grids.json] [--models bcae_x16 ...]

Grids: toolchain/evaluate/grid_sweep.py SWEEP_GRIDS (1x1, 7x5, 24x24, 26x46, 37x37, 48x32); a family with a real side
constraint runs at its nearest grid and must refuse the asked one in one line. Cells: fp32 worst relative L2 /
fp16 worst cosine over outputs (integer outputs: index agreement), against the main job's thresholds.
"""

import argparse
import json
import platform
import tempfile
from pathlib import Path

from ntc_export.backend.onnx.export import export_model
from ntc_export.evaluate.grid_sweep import SWEEP_GRIDS, sweep_graph
from ntc_export.models import load
from ntc_export.util.hashing import tool_versions
from ntc_export.util.paths import ZOO_DIR


def cell(rows: list[dict]) -> str:
    """'rel_l2 / cosine' of one graph at one grid (worst over outputs), '!' when a threshold is missed."""
    def worst(precision: str) -> str:
        got = [r for r in rows if r.get("precision") == precision]
        if any("index_agreement" in r for r in got):
            return f"{min(r['index_agreement'] for r in got if 'index_agreement' in r):.4f}"
        return (f"{max(r['rel_l2'] for r in got):.1e}" if precision == "fp32"
                else f"{min(r['cosine'] for r in got):.5f}")
    run = [r for r in rows if "refused" not in r]
    grid = "x".join(map(str, run[0]["grid"]))
    asked = "x".join(map(str, run[0]["grid_asked"]))
    flag = "" if all(r["pass"] for r in run) else " !"
    return f"{worst('fp32')} / {worst('fp16')}{flag}" + ("" if grid == asked else f" (at {grid})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("sweep_grids.json"))
    ap.add_argument("--models", nargs="*", help="zoo model names (default: all)")
    args = ap.parse_args()
    paths = sorted(ZOO_DIR.glob("*.pt"))
    if args.models:
        paths = [p for p in paths if p.stem in args.models]
    results, table = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            module = load(path).eval()
            graphs = {path.stem: module, **{f"{path.stem}.{k}": g.eval() for k, g in module.extra_graphs().items()}}
            for name, graph in graphs.items():
                onnx_paths = export_model(graph, Path(tmp) / name, ("fp32", "fp16"), name=name)
                rows = sweep_graph(name, graph, onnx_paths)
                results[name] = rows
                cells = [cell([r for r in rows if tuple(r["grid_asked"]) == g]) for g in SWEEP_GRIDS]
                table.append(f"| {name} | " + " | ".join(cells) + " |")
                print(table[-1], flush=True)
    head = "| graph | " + " | ".join("x".join(map(str, g)) for g in SWEEP_GRIDS) + " |"
    markdown = "\n".join([head, "|" + "---|" * (len(SWEEP_GRIDS) + 1), *table])
    report = {"machine": platform.processor() or platform.machine(), "versions": tool_versions(),
              "grids": [list(g) for g in SWEEP_GRIDS], "results": results, "table": markdown}
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(markdown)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
