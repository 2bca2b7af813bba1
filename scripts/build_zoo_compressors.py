"""Build the compressor zoo: checkpoints models/zoo/<prefix>_x{rate}.pt of one family trained on the photo corpus.

bc_autoencoder (prefix bcae): each model starts as PCA of its token cells on the corpus's train split (2x2 cells from
8x, single tokens at 4x) and is trained with simulated BC in the loop; no loss term reads labels or an evaluation
probe. Seeded; weights are stored as float16 (<= 5 MB each). The zoo as committed (train split of `ntc-export tokens --builtin photos`, the
full corpus with its Debian packages present):
    python scripts/build_zoo_compressors.py --data builtin:photos --rates 4 8 16 32 64 --epochs 6 --dim 96 \
        --log zoo_log.json
Other families (`--arch vq|hyperprior|ntc_grid`): the exact command of each zoo checkpoint is in the family's recipe
(ntc_export/train/<arch>.py) docstring; `--set KEY=VALUE` overrides a config entry (JSON value).
Measure it on the validation split, against the PCA reference line fitted on the train split:
    ntc-export rd models/zoo/bcae_x*.pt --data photos_val.npz --fit photos_train.npz --out rd.json
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "models" / "zoo"
MAX_BYTES = 5 * 1024 * 1024


def main(argv=None) -> int:
    import json

    import torch
    from ntc_export.models import load, save
    from ntc_export.train.compressor import load_patch_tokens, train_compressor
    from ntc_export.train.recipes import TRAINABLE, recipe
    from ntc_export.util.atomic import write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=TRAINABLE, default="bc_autoencoder")
    ap.add_argument("--rates", type=float, nargs="+", default=[4, 8, 16, 32, 64])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="Override one config entry (VALUE is JSON); repeat the flag.")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--name", default=None, help="Checkpoint file stem (default <prefix>_x<rate>; one rate only).")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--data", default="builtin:photos",
                    help="Training tokens: builtin:photos (the natural-photograph corpus), builtin:digits or a .npz "
                         "token file; its train split is used.")
    ap.add_argument("--max-images", type=int, default=None, help="Use the first N training maps (default: all).")
    ap.add_argument("--merge", type=int, default=None, help="bc_autoencoder: token cell side (default: 1 below 8x, "
                                                               "else 2).")
    ap.add_argument("--dim", type=int, default=None, help="Width of the decoder (bc_autoencoder zoo: 96).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--init", type=Path, default=None, help="Fine-tune from this checkpoint (one rate only).")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-dir", type=Path, default=ZOO)
    ap.add_argument("--log", type=Path, default=None, help="Write the training log (JSON) here.")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    init = None
    if args.name and len(args.rates) != 1:
        print("--name names one checkpoint: give exactly one --rates value", file=sys.stderr)
        return 1
    if args.init is not None:
        if len(args.rates) != 1:
            print("--init fine-tunes one checkpoint: give exactly one --rates value", file=sys.stderr)
            return 1
        init = load(args.init)
    family = recipe(args.arch)
    overrides = {k: v for k, v in dict(merge=args.merge, dim=args.dim).items() if v is not None}
    for item in args.overrides:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    tokens, _ = load_patch_tokens(args.data, "train")
    tokens = tokens[: args.max_images]
    log = []
    for rate in args.rates:
        start = time.time()
        config = dict(init.config) if init is not None else family.config_for_rate(rate, tokens.shape[-1],
                                                                                   **overrides)
        result = train_compressor(args.arch, config, tokens, epochs=args.epochs, batch=args.batch, lr=args.lr,
                                  seed=args.seed, progress=not args.no_progress,
                                  init=init.state_dict() if init is not None else None)
        path = args.out_dir / f"{args.name or f'{family.ZOO_PREFIX}_x{rate:g}'}.pt"
        save(result.module, path, half=True)
        size = path.stat().st_size
        if size > MAX_BYTES:
            print(f"{path}: {size} bytes exceeds the 5 MB zoo limit", file=sys.stderr)
            return 1
        entry = {"file": path.name, "rate": rate, "config": config, "data": args.data, "images": len(tokens),
                 "epochs": args.epochs, "seed": args.seed, "lr": args.lr, "init": str(args.init) if args.init else None,
                 "history": result.history, "summary": result.summary, "bytes": size,
                 "seconds": round(time.time() - start, 1)}
        log.append(entry)
        print(f"{path.name}: {config}, train cosine {result.history[-1]['cosine']:.4f}, {size / 1e6:.2f} MB, "
              f"{entry['seconds']} s, {result.summary}", flush=True)
    if args.log:
        write_json(args.log, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
