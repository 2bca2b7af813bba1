#!/usr/bin/env python3
"""Every zoo model (and its extra graphs) through both ONNX exporters, same inputs, same process -> JSON.

    python scripts/bench_exporters.py [--out bench_exporters.json] [--samples 64] [--models bcae_x16 ...]

For each graph and exporter ("dynamo": torch.export-based, the default; "torchscript": the legacy one): export
seconds, node count, the graph's input dims (dynamic ones by name), and ONNX Runtime fidelity against PyTorch on held-out photo
tokens (built-in photos validation split with the ViT's CLS attention and keys, 224 px): fp32 worst relative L2 and
fp16 worst cosine over outputs (integer outputs: index agreement), with the pass verdict of the main job's thresholds.
"""

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import onnx
from ntc_export.backend.onnx.export import EXPORTERS, export_model
from ntc_export.data.tokens import builtin_tokens
from ntc_export.evaluate.validate import golden_outputs, model_feeds, validate_onnx
from ntc_export.models import load
from ntc_export.util.hashing import tool_versions
from ntc_export.util.paths import ZOO_DIR


def worst(records: list[dict], precision: str) -> dict:
    rows = [r for r in records if r["precision"] == precision]
    out = {"pass": all(r["pass"] for r in rows)}
    floats = [r for r in rows if "index_agreement" not in r]
    if floats:
        out["rel_l2" if precision == "fp32" else "cosine"] = (max(r["rel_l2"] for r in floats) if precision == "fp32"
                                                              else min(r["cosine"] for r in floats))
    if len(floats) < len(rows):
        out["index_agreement"] = min(r["index_agreement"] for r in rows if "index_agreement" in r)
    return out


def measure(name: str, module, tokens, work: Path) -> dict:
    feeds = model_feeds(module, tokens)
    golden = golden_outputs(module, feeds)
    row = {}
    for exporter in EXPORTERS:
        t = time.perf_counter()
        paths = export_model(module, work / exporter, ("fp32", "fp16"), name=name, exporter=exporter)
        seconds = time.perf_counter() - t
        model = onnx.load(str(paths["fp32"]), load_external_data=False)
        records = validate_onnx(name, module, paths, tokens.grid_tokens, feeds=feeds, golden=golden)
        row[exporter] = {"export_s": round(seconds, 2), "nodes": len(model.graph.node),
                         "inputs": {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
                                    for i in model.graph.input},
                         "fp32": worst(records, "fp32"), "fp16": worst(records, "fp16")}
        print(name, exporter, json.dumps(row[exporter]), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench_exporters.json"))
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--models", nargs="*", help="zoo model names (default: all)")
    args = ap.parse_args()
    tokens = builtin_tokens("photos", 224, split="val", attention=True).subset(range(args.samples))
    paths = sorted(ZOO_DIR.glob("*.pt"))
    if args.models:
        paths = [p for p in paths if p.stem in args.models]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            module = load(path)
            graphs = {path.stem: module, **{f"{path.stem}.{k}": g for k, g in module.extra_graphs().items()}}
            for name, graph in graphs.items():
                results[name] = measure(name, graph, tokens, Path(tmp) / name)
    report = {"machine": platform.processor() or platform.machine(), "versions": tool_versions(),
              "data": f"builtin:photos/val@224[:{args.samples}]", "results": results}
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
