"""Build the compressor zoo: bc_autoencoder checkpoints models/zoo/bcae_x{rate}.pt trained on the photo corpus.

Each model starts as PCA of its token cells on the corpus's train split (2x2 cells from 8x, single tokens at 4x) and
is trained with simulated BC in the loop; no loss term reads labels or an evaluation probe. Seeded; weights are
stored as float16 (<= 5 MB each). The zoo as committed (train split of `ntc-export tokens --builtin photos`, the
full corpus with its Debian packages present):
    python scripts/build_zoo_compressors.py --data builtin:photos --rates 4 8 16 32 64 --epochs 6 --log zoo_log.json
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
    import torch
    from ntc_export.models import load, save
    from ntc_export.train.compressor import bc_autoencoder_config, load_patch_tokens, train_compressor
    from ntc_export.util.atomic import write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[4, 8, 16, 32, 64])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--data", default="builtin:photos",
                    help="Training tokens: builtin:photos (the natural-photograph corpus), builtin:digits or a .npz "
                         "token file; its train split is used.")
    ap.add_argument("--max-images", type=int, default=None, help="Use the first N training maps (default: all).")
    ap.add_argument("--merge", type=int, default=None, help="Token cell side (default: 1 below 8x, else 2).")
    ap.add_argument("--dim", type=int, default=96, help="Width of the residual decoder.")
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
    if args.init is not None:
        if len(args.rates) != 1:
            print("--init fine-tunes one checkpoint: give exactly one --rates value", file=sys.stderr)
            return 1
        init = load(args.init)
    tokens, _ = load_patch_tokens(args.data, "train")
    tokens = tokens[: args.max_images]
    log = []
    for rate in args.rates:
        start = time.time()
        config = dict(init.config) if init is not None else bc_autoencoder_config(rate, tokens.shape[-1], args.merge,
                                                                                  dim=args.dim)
        result = train_compressor("bc_autoencoder", config, tokens, epochs=args.epochs, lr=args.lr, seed=args.seed,
                                  progress=not args.no_progress, init=init.state_dict() if init is not None else None)
        path = args.out_dir / f"bcae_x{rate:g}.pt"
        save(result.module, path, half=True)
        size = path.stat().st_size
        if size > MAX_BYTES:
            print(f"{path}: {size} bytes exceeds the 5 MB zoo limit", file=sys.stderr)
            return 1
        entry = {"file": path.name, "rate": rate, "config": config, "data": args.data, "images": len(tokens),
                 "epochs": args.epochs, "seed": args.seed, "lr": args.lr, "init": str(args.init) if args.init else None,
                 "history": result.history, "bytes": size, "seconds": round(time.time() - start, 1)}
        log.append(entry)
        print(f"{path.name}: merge {config['merge']}, latent {config['latent']}, train cosine "
              f"{result.history[-1]['cosine']:.4f}, {size / 1e6:.2f} MB, {entry['seconds']} s", flush=True)
    if args.log:
        write_json(args.log, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
