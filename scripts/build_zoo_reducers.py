#!/usr/bin/env python3
"""Write the token-count reducers' zoo checkpoints: models/zoo/{tome_64,visionzip_64,visionzip_16,ovis_vet_512}.pt.

ToMe and VisionZip have no weights: their checkpoints are config only (arch + budgets; both score tokens with the
ViT's penultimate-block keys, VisionZip's dominant tokens with the last block's CLS attention, so the main job feeds
them from token sets made with attention). ovis_vet (soft) is trained like the projectors (scripts/build_zoo.py:
linear task head on the digits labels, same optimiser, schedule, seed and data split), weights stored as float16; its
vocabulary (512 visual words) keeps the file under 2.5 MB. The zoo as committed (1 thread):

    OMP_NUM_THREADS=1 python scripts/build_zoo_reducers.py --epochs 12

Metadata (validation accuracy, bytes, training seconds) goes to models/zoo/reducers.json.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from ntc_export.data.tokens import builtin_tokens
from ntc_export.models import build, save
from ntc_export.util.paths import ZOO_DIR

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_zoo import train  # noqa: E402  (the projectors' training loop, shared so both are trained alike)

# name -> (arch, config, trained)
ZOO = {
    "tome_64": ("tome", {"input_dim": 384, "num_tokens": 256, "r": 48, "steps": 4, "keys_dim": 384,
                         "metric_levels": 127}, False),
    "visionzip_64": ("visionzip", {"input_dim": 384, "num_tokens": 256, "dominant": 54, "contextual": 10,
                                   "heads": 6, "keys_dim": 384}, False),
    "visionzip_16": ("visionzip", {"input_dim": 384, "num_tokens": 256, "dominant": 13, "contextual": 3,
                                   "heads": 6, "keys_dim": 384}, False),
    "ovis_vet_512": ("ovis_vet", {"input_dim": 384, "output_dim": 512, "vocab_size": 512, "hidden_stride": 2},
                     True),
}
MAX_BYTES = int(2.5 * 1024 * 1024)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", choices=sorted(ZOO), help="write only these entries")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--out", type=Path, default=ZOO_DIR)
    args = ap.parse_args()
    meta_path = args.out / "reducers.json"
    summary = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    train_set = val_set = None
    for name in args.only or ZOO:
        arch, config, trained = ZOO[name]
        start = time.perf_counter()
        entry = {"arch": arch}
        if trained:
            if train_set is None:
                train_set = builtin_tokens("digits", 224, split="train")
                val_set = builtin_tokens("digits", 224, split="val")
            model, val_acc = train(name, arch, config, train_set, val_set, args.epochs)
            entry["val_accuracy"] = round(val_acc, 4)
        else:
            model = build(arch, config)
        path = args.out / f"{name}.pt"
        save(model, path, half=True)
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise SystemExit(f"{path} is {size} bytes (> 2.5 MB): shrink its config")
        summary[name] = {**entry, "bytes": size, "train_seconds": round(time.perf_counter() - start, 1)}
        print(json.dumps({name: summary[name]}), flush=True)
    meta_path.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
