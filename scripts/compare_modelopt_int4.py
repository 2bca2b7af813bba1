"""Our INT4 AWQ against NVIDIA ModelOpt's ONNX INT4 AWQ on the same fp32 graph and the same calibration tokens: output
cosine and SNR against the fp32 graph on held-out tokens, and weight bytes; JSON on stdout (and --json-out).

Both graphs are run by ONNX Runtime on the CPU with Q/DQ fusion off, so each blocked DequantizeLinear computes as
written. Every layer is INT4 on both sides (no layers kept in fp16). Needs ModelOpt (`pip install
"nvidia-modelopt[onnx]"`; its onnx extra pins onnx and onnxruntime-gpu versions, so use a separate environment);
exits 2 with the import error when it is missing.

    python scripts/compare_modelopt_int4.py models/zoo/mlp2x_gelu.pt --out /tmp/cmp --json-out cmp.json
"""

import argparse
import contextlib
import json
import sys
from pathlib import Path

MODELOPT_METHODS = ("awq_clip", "awq_lite")


def modelopt_quantize():
    """ModelOpt's ONNX quantize function, or exit 2 saying why it cannot be imported."""
    try:
        from modelopt.onnx.quantization import quantize
    except Exception as e:  # ImportError, or its CUDA-side imports failing
        print(json.dumps({"error": f"ModelOpt is not importable here: {type(e).__name__}: {e}"}))
        raise SystemExit(2)
    return quantize


def exact_session(path: Path):
    """ONNX Runtime CPU session that runs DequantizeLinear as written (no fusion into MatMulNBits / QLinear)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def outputs(path: Path, feeds: dict) -> dict:
    """The graph's outputs on `feeds`, float inputs cast to the graph's own type, in batches of 8."""
    import numpy as np

    sess = exact_session(path)
    types = {i.name: np.float16 if i.type == "tensor(float16)" else None for i in sess.get_inputs()}
    names = [o.name for o in sess.get_outputs()]
    n = len(next(iter(feeds.values())))
    parts = [sess.run(names, {k: v[i:i + 8].astype(types[k]) if types.get(k) else v[i:i + 8]
                              for k, v in feeds.items()}) for i in range(0, n, 8)]
    return {name: np.concatenate([p[j] for p in parts]).astype(np.float64) for j, name in enumerate(names)}


def score(reference: dict, path: Path, feeds: dict) -> dict:
    """Per output {cosine, snr_db, rel_l2} against the fp32 reference, and the graph's weight bytes."""
    import onnx
    from ntc_export.backend.onnx.inspect import constant_bytes
    from ntc_export.evaluate.fidelity import fidelity

    got = outputs(path, feeds)
    fid = {k: {m: fidelity(ref, got[k])[m] for m in ("cosine", "snr_db", "rel_l2")} for k, ref in reference.items()}
    return {"onnx": str(path), "fidelity": fid, "worst_cosine": min(f["cosine"] for f in fid.values()),
            "worst_snr_db": min(f["snr_db"] for f in fid.values()),
            "weight_bytes": constant_bytes(onnx.load(str(path), load_external_data=False))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="projector checkpoint (.pt)")
    parser.add_argument("--out", type=Path, required=True, help="work folder")
    parser.add_argument("--max-calib", type=int, default=64, help="calibration samples (evenly spaced)")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    args.out = args.out.resolve()
    quantize = modelopt_quantize()

    import numpy as np
    from ntc_export.backend.onnx.export import export_model, to_fp16
    from ntc_export.calibration import calibrate
    from ntc_export.data.tokens import load_data
    from ntc_export.evaluate.validate import model_feeds
    from ntc_export.models import load

    module = load(args.checkpoint)
    args.out.mkdir(parents=True, exist_ok=True)
    fp32 = Path(export_model(module, args.out, precisions=("fp32",))["fp32"])
    calib, calib_source = load_data(None, "calib")
    calib = calib.subset(np.linspace(0, len(calib) - 1, min(args.max_calib, len(calib))).round().astype(int))
    val, val_source = load_data(None, "val")
    calib_feeds, val_feeds = model_feeds(module, calib), model_feeds(module, val)
    if not isinstance(calib_feeds, dict) or not isinstance(val_feeds, dict):
        raise SystemExit("the comparison takes tokens of one grid")
    reference = outputs(fp32, val_feeds)
    import onnx

    fp16_path = args.out / "model.fp16.onnx"
    onnx.save(to_fp16(onnx.load(str(fp32))), str(fp16_path))
    ours = calibrate(fp32, calib_feeds, "int4", "auto", args.out / "ours", log=lambda text: None)
    result = {"checkpoint": str(args.checkpoint), "calibration": f"{calib_source}[{len(calib)}]",
              "held_out": f"{val_source}[{len(val)}]", "runtime": "onnxruntime CPU, Q/DQ fusion off",
              "fp16_graph": score(reference, fp16_path, val_feeds),
              "ours_int4_awq": {**score(reference, ours.model_path, val_feeds),
                                "alphas": {w: r["alpha"] for w, r in ours.weights.items()}}}
    gemms = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Gemm"]
    result["modelopt_gemm_nodes"] = gemms
    for method in MODELOPT_METHODS:
        # every layer as ours does; then without Gemm nodes (ModelOpt 0.47 writes a Gemm transB weight's DQ with
        # axis 0 but scales laid out for axis 1, which ONNX Runtime refuses), where ours still quantizes them
        for suffix, skip in (("", []), ("_without_gemm", gemms)):
            path = args.out / f"modelopt.int4.{method}{suffix}.onnx"
            try:
                with contextlib.chdir(args.out):  # ModelOpt leaves external-data and shape-inference files in cwd
                    quantize(str(fp32), quantize_mode="int4", calibration_method=method, calibration_data=calib_feeds,
                             calibration_eps=["cpu"], output_path=str(path), log_level="WARNING",
                             nodes_to_exclude=skip)
                result[f"modelopt_int4_{method}{suffix}"] = score(reference, path, val_feeds)
            except Exception as e:  # ModelOpt's own failures are reported, not hidden
                result[f"modelopt_int4_{method}{suffix}"] = {
                    "error": f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"}
    import modelopt

    result["modelopt_version"] = modelopt.__version__
    text = json.dumps(result, indent=2)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
