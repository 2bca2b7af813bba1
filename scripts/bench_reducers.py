#!/usr/bin/env python3
"""Token-count reducers on a task: linear-probe accuracy of the stamps task (6 classes) on reduced tokens -> JSON.

    python scripts/bench_reducers.py [--out bench_reducers.json]

Tokens: the built-in stamps task (train / val split by stamp, 224 px) with the ViT's last-block CLS attention and
penultimate-block keys (`ntc-export tokens --attention`). Every method's tokens come from its exported graph run in
ONNX Runtime (fp32, and fp16 for the reducers); baselines at the same token counts: uniform grid subsampling and
average pooling of square cells. The probe (standardised logistic regression on the plain mean of an image's output
tokens) is fitted on each method's own training tokens and scored on its validation tokens.
"""

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
from ntc_export.backend.onnx.export import export_model
from ntc_export.backend.onnxrt.runner import OrtRunner
from ntc_export.data import vit
from ntc_export.data.tokens import builtin_tokens
from ntc_export.evaluate.rate_distortion import fit_probe
from ntc_export.models.tome import ToMe
from ntc_export.models.visionzip import BUDGETS, VisionZip
from ntc_export.util.hashing import tool_versions

TOME = {128: (32, 4), 64: (32, 6), 32: (28, 8)}  # output tokens -> (r, steps) from 256
VISIONZIP = (64, 32, 16)


def feeds_of(ts) -> dict[str, np.ndarray]:
    """Every input a reducer may take: patch tokens, CLS attention per head, patch keys averaged over heads."""
    keys = ts.keys[:, 1:].reshape(len(ts), *ts.grid, vit.HEADS, vit.DIM // vit.HEADS).mean(3)
    return {"tokens": np.ascontiguousarray(ts.grid_tokens),  # the graphs take every input on the grid
            "attention": np.ascontiguousarray(ts.attention).reshape(len(ts), -1, *ts.grid),
            "keys": np.ascontiguousarray(keys, dtype=np.float32)}


def run_graph(module, folder: Path, precision: str, feeds: dict) -> np.ndarray:
    path = export_model(module, folder, (precision,))[precision]
    runner = OrtRunner(path, providers=["CPUExecutionProvider"])
    return runner.run({n: feeds[n] for n in module.input_names})["tokens_out"].astype(np.float32)


def subsample(tokens: np.ndarray, count: int) -> np.ndarray:
    """`count` tokens at evenly spaced grid positions."""
    return tokens[:, np.linspace(0, tokens.shape[1] - 1, count).round().astype(int)]


def avg_pool(tokens: np.ndarray, count: int) -> np.ndarray:
    """Mean of square cells giving `count` tokens (count a square dividing the grid)."""
    side, out = int(round(tokens.shape[1] ** 0.5)), int(round(count ** 0.5))
    k = side // out
    grid = tokens.reshape(len(tokens), out, k, out, k, -1)
    return grid.mean((2, 4)).reshape(len(tokens), count, -1)


def accuracy(train: np.ndarray, train_labels, val: np.ndarray, val_labels) -> float:
    return float(fit_probe(train, train_labels).score(val.mean(1), val_labels))


def with_stderr(rows: list[dict], n: int) -> list[dict]:
    """Each accuracy's binomial standard error over the n validation images (differences below ~2 of them are
    noise)."""
    return [{**r, "stderr": float(np.sqrt(r["accuracy"] * (1 - r["accuracy"]) / n))} for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench_reducers.json"))
    args = ap.parse_args()
    train, val = (builtin_tokens("stamps", 224, split=s, attention=True) for s in ("train", "val"))
    feeds = {"train": feeds_of(train), "val": feeds_of(val)}
    rows = [{"method": "all patch tokens", "tokens": 256, "precision": "fp32",
             "accuracy": accuracy(train.patch_tokens, train.labels, val.patch_tokens, val.labels)}]
    reducers = [(f"tome r={r} x{s}", n, ToMe(r=r, steps=s)) for n, (r, s) in TOME.items()]
    reducers += [(f"visionzip {BUDGETS[n][0]}+{BUDGETS[n][1]}", n,
                  VisionZip(dominant=BUDGETS[n][0], contextual=BUDGETS[n][1], keys_dim=vit.DIM // vit.HEADS))
                 for n in VISIONZIP]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, count, module) in enumerate(reducers):
            for precision in ("fp32", "fp16"):
                out = {s: run_graph(module.eval(), Path(tmp) / f"{i}{s}", precision, feeds[s]) for s in feeds}
                rows.append({"method": name, "tokens": count, "precision": precision,
                             "accuracy": accuracy(out["train"], train.labels, out["val"], val.labels)})
                print(rows[-1], flush=True)
    for count in sorted({n for _, n, _ in reducers}, reverse=True):
        rows.append({"method": "uniform subsample", "tokens": count, "precision": "fp32",
                     "accuracy": accuracy(subsample(train.patch_tokens, count), train.labels,
                                          subsample(val.patch_tokens, count), val.labels)})
        if round(count ** 0.5) ** 2 == count:
            rows.append({"method": "average pool", "tokens": count, "precision": "fp32",
                         "accuracy": accuracy(avg_pool(train.patch_tokens, count), train.labels,
                                              avg_pool(val.patch_tokens, count), val.labels)})
    rows = with_stderr(rows, len(val))
    result = {"task": "stamps (6 classes), linear probe on the mean output token", "train": len(train),
              "val": len(val), "rows": rows, "machine": platform.machine(), "versions": tool_versions()}
    args.out.write_text(json.dumps(result, indent=1))
    for row in rows:
        print(f"{row['method']:>24} {row['tokens']:>4} {row['precision']}  {row['accuracy']:.3f} ± {row['stderr']:.3f}")


if __name__ == "__main__":
    main()
