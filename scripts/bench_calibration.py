"""Calibration benchmark: our INT8/FP8 Q/DQ vs ONNX Runtime's quantize_static (and ModelOpt where it runs).

For every zoo model (models/zoo/*.pt: projectors and BC-autoencoder decoders; freshly built projectors if none):
output SNR/cosine vs PyTorch on held-out tokens (default: the photo corpus, calibration split -> validation split;
`--data digits` for the digits splits and task-head accuracy) for each of our INT8 methods, ORT's
MinMax/Entropy/Percentile (QDQ, same calibration data, default settings and a per-channel MatMul/Gemm/Conv-only
variant), our FP8, and ORT CPU latency of INT8 vs fp32 (ratio, same process). Every graph is scored with exact Q/DQ
arithmetic (what TensorRT computes, the same on every CPU); the best of ours and of ORT's are also scored in ORT's
fused int8 CPU kernels ("fused", CPU-dependent: the ISA is recorded). Models that take
other inputs than tokens (the decoders: INT32 BC blocks) are fed `module.prepare_inputs(tokens)`; their ntc::BcDecode
node runs through the project's ORT custom ops, for ORT's quantizer too. Decomposed attention lowering. Writes JSON.

    python scripts/bench_calibration.py --out build/bench_calibration.json [--modelopt-site DIR]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from ntc_export.backend.onnx.export import export_model
from ntc_export.backend.onnxrt.runner import ort_session_options
from ntc_export.calibration import calibrate
from ntc_export.evaluate.fidelity import fidelity
from ntc_export.evaluate.latency import cpu_isa
from ntc_export.evaluate.validate import golden_outputs, model_feeds
from ntc_export.models import build, load
from ntc_export.ops.ort_registry import has_plugin_nodes, prepare_for_ort, register_custom_ops
from ntc_export.util.atomic import write_json
from ntc_export.util.paths import ZOO_DIR

FRESH = {"mlp2x_gelu": dict(output_dim=512, num_classes=10), "patch_merger": dict(output_dim=512, num_classes=10),
         "pixel_shuffle": dict(output_dim=512, num_classes=10), "merge3x3": dict(output_dim=512, num_classes=10),
         "conv16x": dict(output_dim=512, num_classes=10)}
OUR_INT8 = ("minmax", "percentile", "entropy", "mse", "auto")
ORT_METHODS = ("MinMax", "Entropy", "Percentile")


def held_out(name: str, n_calib: int, n_val: int):
    """(calib tokens, val tokens, val labels or None, source): disjoint calib/val splits of a built-in set."""
    from ntc_export.data.tokens import builtin_tokens

    cal = builtin_tokens(name, 224, split="calib")
    val = builtin_tokens(name, 224, split="val")
    labels = None if val.labels is None else val.labels[:n_val]
    return (cal.patch_tokens[:n_calib].astype(np.float32), val.patch_tokens[:n_val].astype(np.float32), labels,
            f"ntc_export.data.tokens.builtin_tokens {name} calib/val")


def session(path, threads=None, fused=False):
    """ORT CPU session of an ONNX file (exact Q/DQ arithmetic unless `fused`); ntc:: nodes run through the project's
    custom ops (always registered: ORT's quantizer output holds them in the extensions domain, which OrtRunner's
    ntc-domain check does not see)."""
    model = onnx.load(str(path))
    if has_plugin_nodes(model):
        model = prepare_for_ort(model)
    so = ort_session_options(threads, fused_qdq=fused)
    register_custom_ops(so)
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def slices(feeds, batch):
    n = len(next(iter(feeds.values())))
    return [{k: v[i:i + batch] for k, v in feeds.items()} for i in range(0, n, batch)]


def run_onnx(path, feeds, batch=16, fused=False):
    sess = session(path, fused=fused)
    names = [o.name for o in sess.get_outputs()]
    outs = [sess.run(names, x) for x in slices(feeds, batch)]
    return {n: np.concatenate([o[k] for o in outs]) for k, n in enumerate(names)}


def score(ref, got, labels):
    f = fidelity(ref["tokens_out"], got["tokens_out"])
    out = {"snr_db": round(f["snr_db"], 3), "cosine": round(f["cosine"], 6)}
    if "logits" in ref and labels is not None:
        out["accuracy"] = float((got["logits"].argmax(1) == labels).mean())
        out["accuracy_delta_vs_fp32"] = round(out["accuracy"] - float((ref["logits"].argmax(1) == labels).mean()), 6)
        out["top1_agreement_vs_fp32"] = float((got["logits"].argmax(1) == ref["logits"].argmax(1)).mean())
    return out


def ort_quantize(fp32, out, calib, method, per_channel_matmul_only: bool):
    """ORT quantize_static (QDQ) on `calib` feeds; a graph with ntc:: nodes is given to it as the ORT copy (custom
    ops in the extensions domain) and its calibration session registers the project's custom ops."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, quantize_static
    from onnxruntime.quantization.calibrate import CalibraterBase

    model = onnx.load(str(fp32))
    source = fp32
    if has_plugin_nodes(model):
        source = Path(out).with_suffix(".ort-input.onnx")
        onnx.save(prepare_for_ort(model), str(source))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(slices(calib, 8))

        def get_next(self):
            return next(self.it, None)

    def create_inference_session(self):
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        register_custom_ops(so)
        self.infer_session = ort.InferenceSession(self.augmented_model_path, sess_options=so,
                                                  providers=self.execution_providers)

    kwargs = dict(per_channel=True, op_types_to_quantize=["MatMul", "Gemm", "Conv"]) if per_channel_matmul_only else {}
    original = CalibraterBase.create_inference_session
    CalibraterBase.create_inference_session = create_inference_session
    try:
        quantize_static(str(source), str(out), Reader(), quant_format=QuantFormat.QDQ,
                        calibrate_method=getattr(CalibrationMethod, method), **kwargs)
    finally:
        CalibraterBase.create_inference_session = original
    return out


_MODELOPT_RUN = """
import sys, numpy as np
from modelopt.onnx.quantization import quantize
with np.load(sys.argv[2]) as z:
    calib = {k: z[k] for k in z.files}
quantize(sys.argv[1], quantize_mode="int8", calibration_data=calib, calibration_method=sys.argv[4],
         calibration_eps=["cpu"], high_precision_dtype="fp32", output_path=sys.argv[3], log_level="ERROR")
"""


def modelopt_quantize(fp32, out, calib, method, site):
    npz = Path(out).with_suffix(".calib.npz")
    np.savez(npz, **calib)
    env = dict(os.environ)
    if site:
        env["PYTHONPATH"] = site + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", _MODELOPT_RUN, str(fp32), str(npz), str(out), method], env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not Path(out).exists():
        lines = [l for l in (proc.stderr or proc.stdout).strip().splitlines() if l.strip()]
        raise RuntimeError(lines[-1][:300] if lines else f"exit {proc.returncode}")
    return out


def latency_ratio(fp32, int8, x, repeats=20):
    """Median ORT CPU latency of int8 / fp32 on the same batch (feeds), runs interleaved in one process."""
    sessions = {"fp32": session(fp32, threads=2), "int8": session(int8, threads=2, fused=True)}
    times = {k: [] for k in sessions}
    for _ in range(3):
        for s in sessions.values():
            s.run(None, x)
    for _ in range(repeats):
        for k, s in sessions.items():
            t = time.perf_counter()
            s.run(None, x)
            times[k].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"int8_over_fp32": round(med["int8"] / med["fp32"], 3), "batch": int(len(next(iter(x.values())))),
            "repeats": repeats}


def bench_model(name, module, calib, val, labels, work: Path, opts):
    work.mkdir(parents=True, exist_ok=True)
    decoder = list(getattr(module, "input_names", ["tokens"])) != ["tokens"]
    n_calib, n_val = (opts.decoder_calib, opts.decoder_val) if decoder else (opts.calib, opts.val)
    calib_feeds, val_feeds = model_feeds(module, calib[:n_calib]), model_feeds(module, val[:n_val])
    labels = None if labels is None else labels[:n_val]
    fp32 = export_model(module, work, precisions=("fp32",))["fp32"]
    ref = golden_outputs(module, val_feeds)
    row = {"arch": module.arch, "config": module.config, "inputs": {k: [str(v.dtype), list(v.shape[1:])]
                                                                    for k, v in val_feeds.items()},
           "samples": {"calib": n_calib, "val": n_val}, "fp32_onnx": score(ref, run_onnx(fp32, val_feeds), labels),
           "ours_int8": {}, "ort_int8": {}, "errors": {}}
    if "logits" in ref and labels is not None:
        row["fp32_pytorch_accuracy"] = float((ref["logits"].argmax(1) == labels).mean())
    methods = opts.decoder_methods if decoder else opts.methods
    for method in methods:
        t = time.perf_counter()
        res = calibrate(fp32, calib_feeds, "int8", method, work / f"ours-{method}", log=lambda s: None)
        row["ours_int8"][method] = {**score(ref, run_onnx(res.model_path, val_feeds), labels),
                                    "calibrate_s": round(time.perf_counter() - t, 2)}
        if method == "auto":
            row["ours_int8"][method]["methods_chosen"] = {t: a["method"] for t, a in res.activations.items()}
    best = max(row["ours_int8"], key=lambda m: row["ours_int8"][m]["snr_db"])
    row["ours_int8_best"] = {"method": best, **row["ours_int8"][best]}
    for variant, pc in (("default", False), ("per_channel_matmul_gemm_conv", True)):
        for method in opts.ort_methods:
            key = f"{method}/{variant}"
            try:
                q = ort_quantize(fp32, work / f"ort-{method}-{variant}.onnx", calib_feeds, method, pc)
                row["ort_int8"][key] = score(ref, run_onnx(q, val_feeds), labels)
            except Exception as e:  # ORT's quantizer raises many types; record and go on
                row["errors"][f"ort {key}"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    if row["ort_int8"]:
        ort_best = max(row["ort_int8"], key=lambda k: row["ort_int8"][k]["snr_db"])
        row["ort_int8_best"] = {"config": ort_best, **row["ort_int8"][ort_best]}
        row["fused"] = {"isa": cpu_isa(),
                        "ours_best": score(ref, run_onnx(work / f"ours-{best}" / "model.int8.onnx", val_feeds,
                                                         fused=True), labels),
                        "ort_best": score(ref, run_onnx(work / f"ort-{ort_best.replace('/', '-')}.onnx", val_feeds,
                                                        fused=True), labels)}
        row["fused"]["ours_best_exact_minus_fused_db"] = round(
            row["ours_int8_best"]["snr_db"] - row["fused"]["ours_best"]["snr_db"], 3)
        minmax = row["ort_int8"].get("MinMax/default")
        row["ours_best_minus_ort_best_db"] = round(row["ours_int8_best"]["snr_db"] - row["ort_int8_best"]["snr_db"], 3)
        if minmax and "minmax" in row["ours_int8"]:
            row["ours_minmax_minus_ort_minmax_db"] = round(row["ours_int8"]["minmax"]["snr_db"] - minmax["snr_db"], 3)
    fp8_method = opts.decoder_fp8_method if decoder else opts.fp8_method
    fp8 = calibrate(fp32, calib_feeds, "fp8", fp8_method, work / "ours-fp8", log=lambda s: None)
    row["ours_fp8"] = {"method": fp8_method, **score(ref, run_onnx(fp8.model_path, val_feeds), labels)}
    row["modelopt_int8"] = {}
    for method in () if opts.skip_modelopt else ("max", "entropy"):
        try:
            q = modelopt_quantize(fp32, work / f"modelopt-{method}.onnx", calib_feeds, method, opts.modelopt_site)
            row["modelopt_int8"][method] = score(ref, run_onnx(q, val_feeds), labels)
        except Exception as e:
            row["modelopt_int8"][method] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    if not opts.skip_latency:
        best_path = work / f"ours-{best}" / "model.int8.onnx"
        row["latency_ort_cpu"] = latency_ratio(fp32, best_path, slices(val_feeds, 8)[0])
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--calib", type=int, default=64, help="calibration samples (token-input models)")
    ap.add_argument("--val", type=int, default=128, help="held-out samples (token-input models)")
    # The decoders' BcDecode runs on the host per texture plane under ORT: fewer samples by default.
    ap.add_argument("--decoder-calib", type=int, default=32, help="calibration samples (block-input decoders)")
    ap.add_argument("--decoder-val", type=int, default=64, help="held-out samples (block-input decoders)")
    ap.add_argument("--methods", nargs="+", default=list(OUR_INT8), choices=OUR_INT8, help="our INT8 methods")
    ap.add_argument("--decoder-methods", nargs="+", default=["minmax", "percentile", "entropy", "mse"],
                    choices=OUR_INT8, help="our INT8 methods for the decoders")
    ap.add_argument("--ort-methods", nargs="*", default=list(ORT_METHODS), choices=ORT_METHODS)
    ap.add_argument("--fp8-method", default="auto", choices=("minmax", "percentile", "mse", "auto"))
    ap.add_argument("--decoder-fp8-method", default="mse", choices=("minmax", "percentile", "mse", "auto"))
    ap.add_argument("--skip-modelopt", action="store_true", help="do not try nvidia-modelopt")
    ap.add_argument("--skip-latency", action="store_true", help="no ORT CPU latency ratio")
    ap.add_argument("--models", nargs="*", help="zoo model names to run (default: all)")
    ap.add_argument("--data", default="photos", choices=("photos", "digits"),
                    help="built-in calib/val splits (digits: with task-head accuracy)")
    ap.add_argument("--modelopt-site", default=None, help="extra PYTHONPATH holding nvidia-modelopt")
    args = ap.parse_args(argv)
    calib, val, labels, source = held_out(args.data, max(args.calib, args.decoder_calib),
                                          max(args.val, args.decoder_val))
    zoo = sorted(ZOO_DIR.glob("*.pt"))
    if args.models:
        zoo = [p for p in zoo if p.stem in args.models]
    result = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs ({cpu_isa()}), no GPU",
              "command": " ".join(sys.argv),
              "tokens": {"source": source, "calib": int(len(calib)), "val": int(len(val))},
              "versions": {"onnxruntime": ort.__version__, "torch": torch.__version__},
              "models_source": "models/zoo" if zoo else "freshly built (random init; no zoo checkpoints found)",
              "models": {}}
    modules = ({p.stem: (lambda p=p: load(p)) for p in zoo}
               or {k: (lambda k=k: build(k, FRESH[k]).eval()) for k in FRESH})
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in modules.items():
            t = time.perf_counter()
            try:
                result["models"][name] = bench_model(name, make(), calib, val, labels, Path(tmp) / name, args)
            except Exception as e:  # one model failing must not hide the others' numbers
                result["models"][name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
            result["models"][name]["bench_s"] = round(time.perf_counter() - t, 1)
            print(name, json.dumps({k: v for k, v in result["models"][name].items()
                                    if k in ("ours_int8_best", "ort_int8_best", "ours_best_minus_ort_best_db",
                                             "ours_fp8", "fused", "error")}), file=sys.stderr)
            write_json(args.out, result)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
