"""Engine and weight bytes per precision (fp16, int8, fp8, int4, nvfp4) for projector checkpoints and a Qwen2.5-VL
merger at real size, built ahead of time for TensorRT-RTX targets; JSON on stdout (and --json-out).

The merger is transformers' own Qwen2_5_VLPatchMerger with random weights (out width 3584, as Qwen2.5-VL-7B), saved
as a Hugging Face folder and converted with `ntc-export convert-hf`; its context width is 384 by default (our ViT
tokens feed it: int8/fp8/int4/nvfp4 calibrate on the photo corpus) or 1280 (the 7B model's own width, ~45 M
parameters; calibrated on Gaussian tokens, so only its bytes mean anything).

    .venv/bin/python scripts/measure_weight_only_engines.py models/zoo/mlp2x_gelu.pt --merger-context 384 \
        --out /tmp/wo --json-out wo.json
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

PRECISIONS = ("fp16", "int8", "fp8", "int4", "nvfp4")
TARGETS = ("rtx-ampere", "rtx-ada", "rtx-blackwell")
QWEN25_7B_OUT = 3584  # Qwen2.5-VL-7B's out_hidden_size (the language model's width)


def merger_folder(folder: Path, context: int, seed: int = 0) -> Path:
    """A Hugging Face folder holding only transformers' Qwen2.5-VL merger (random weights, scaled like a trained
    layer's: 1/sqrt(fan-in)) and the config keys convert-hf reads."""
    import torch
    from safetensors.torch import save_file
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLPatchMerger

    torch.manual_seed(seed)
    merger = Qwen2_5_VLPatchMerger(dim=QWEN25_7B_OUT, context_dim=context)
    with torch.no_grad():
        for name, p in merger.named_parameters():
            r = torch.randn(p.shape)
            p.copy_(r / p.shape[1] ** 0.5 if p.ndim == 2 else 1 + 0.2 * r if name.endswith("weight") else 0.2 * r)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(
        {"model_type": "qwen2_5_vl", "vision_config": {"hidden_size": context, "out_hidden_size": QWEN25_7B_OUT}}))
    save_file({f"visual.merger.{k}": v.contiguous() for k, v in merger.state_dict().items()},
              folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def gaussian_tokens(path: Path, width: int, n: int = 32, side: int = 16, seed: int = 0) -> Path:
    """Token file of unit Gaussian tokens (CLS + side*side patches, `width` wide) for a width no ViT here gives."""
    import numpy as np
    from ntc_export.data.tokens import TokenSet

    rng = np.random.default_rng(seed)
    TokenSet(rng.standard_normal((n, 1 + side * side, width), dtype=np.float32), (side, side)).save(path)
    return path


def ntc(*args) -> None:
    cmd = [str(Path(sys.executable).with_name("ntc-export")), *map(str, args)]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def build(checkpoint: Path, out: Path, calib: Path | None, int4_block: int | None) -> list[dict]:
    """Every (target, precision) pair the targets build, through `ntc-export build --json`."""
    cmd = ["build", checkpoint, "--out", out, "--skip-unsupported", "--json", "--calib-method", "mse"]
    cmd += [a for t in TARGETS for a in ("--target", t)] + [a for p in PRECISIONS for a in ("--precision", p)]
    cmd += ["--calib-data", calib] if calib else []
    cmd += ["--int4-block", int4_block] if int4_block else []
    exe = str(Path(sys.executable).with_name("ntc-export"))
    print("$ ntc-export", " ".join(map(str, cmd)), file=sys.stderr, flush=True)
    done = subprocess.run([exe, *map(str, cmd)], check=True, stdout=subprocess.PIPE, text=True)
    rows = json.loads(done.stdout)
    manifest = json.loads((out / "engines" / "manifest.json").read_text())["engines"]
    weights = {(e["target"], e["precision"]): e.get("weight_bytes") for e in manifest if e.get("kind") == "engine"}
    return [{k: r.get(k) for k in ("target", "precision", "status", "bytes", "reason")}
            | {"weight_bytes": weights.get((r["target"], r["precision"]))} for r in rows]


def table(rows: list[dict]) -> dict:
    """target -> precision -> {engine_bytes, weight_bytes, vs_fp16_engine}, refusals as their reason."""
    out = {}
    for t in TARGETS:
        fp16 = next((r["bytes"] for r in rows if r["target"] == t and r["precision"] == "fp16"), None)
        out[t] = {r["precision"]: ({"engine_bytes": r["bytes"], "weight_bytes": r["weight_bytes"],
                                    "vs_fp16_engine": round(r["bytes"] / fp16, 4) if fp16 and r["bytes"] else None}
                                   if r["status"] != "refused" else {"refused": r["reason"]})
                  for r in rows if r["target"] == t}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*", type=Path, help="projector checkpoints (.pt)")
    parser.add_argument("--merger-context", type=int, action="append", default=[],
                        help="also measure a Qwen2.5-VL merger of this context width (repeat: 384, 1280)")
    parser.add_argument("--out", type=Path, required=True, help="work folder (engines, converted checkpoints)")
    parser.add_argument("--int4-block", type=int, default=None)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    results = {}

    def measured(name: str, make) -> None:
        """One model's table, or its failure; the JSON is rewritten after each model."""
        try:
            results[name] = make()
        except (subprocess.CalledProcessError, OSError, ValueError) as e:
            results[name] = {"error": str(e)[:400]}
        if args.json_out:
            args.json_out.write_text(json.dumps(
                {"targets": list(TARGETS), "precisions": list(PRECISIONS), "models": results}, indent=2) + "\n")

    def merger(context: int) -> dict:
        name = f"qwen25vl7b_merger_ctx{context}"
        folder = merger_folder(args.out / name / "hf", context)
        ckpt = args.out / name / f"{name}.pt"
        ntc("convert-hf", folder, "--out", ckpt)
        calib = None if context == 384 else gaussian_tokens(args.out / name / "calib.npz", context)
        return table(build(ckpt, args.out / name, calib, args.int4_block))

    for ckpt in args.checkpoints:
        measured(ckpt.stem, lambda: table(build(ckpt, args.out / ckpt.stem, None, args.int4_block)))
    for context in args.merger_context:
        measured(f"qwen25vl7b_merger_ctx{context}", lambda: merger(context))
    print(json.dumps({"targets": list(TARGETS), "precisions": list(PRECISIONS), "models": results}, indent=2))
    return 0 if not any("error" in r for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
