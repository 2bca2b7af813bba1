"""report.md: the same sections as index.html, as GitHub-flavoured Markdown (plots linked as files beside it)."""

from .collect import hashed_inputs
from .fmt import batches, ms, num, precisions, size, task


def _row(cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _table(head, rows) -> list[str]:
    return [_row(head), _row(["---"] * len(head)), *rows, ""]


def render(view: dict, image_files: dict[str, str]) -> str:
    acc, lines = view["accuracy"], ["# ntc-export report", "", "## Summary", ""]
    lines += [f"- verdict: **{view['verdict']}** ({len(acc)} accuracy rows, "
              f"{sum(r['verdict'] == 'FAIL' for r in acc)} failing, "
              f"{sum(r['verdict'] == 'not executed' for r in acc)} not executed)",
              f"- data: `{view['data'].get('source')}` ({view['data'].get('samples')} held-out samples)"]
    flagged = [f"{r['model']} {r['precision']}" for r in view["latency"] if r.get("no_faster_than_fp16")]
    if flagged:
        lines.append(f"- **no faster than fp16**: {', '.join(flagged)}")
    lines += [f"- kept in high precision: {k}" for k in view.get("kept_high_precision", [])]
    lines += [f"- first layer below the drift threshold: {d['model']} {d['precision']}: **{d['first_below']}**"
              for d in view["drift"] if d["first_below"]]
    lines += ["", "## Where each number was measured", "",
              "- accuracy rows: the device named by each row's backend/target (onnxruntime `cpu` = this machine's CPU, "
              "INT8/FP8 graphs with exact Q/DQ arithmetic as TensorRT computes it, not ORT's fused int8 kernels)",
              f"- latency measured on: {', '.join(view['devices']['measured_on']) or 'nothing'}",
              f"- TensorRT engines: {', '.join(view['devices']['tensorrt'])} (engine latency only where the engine "
              "ran; nothing is estimated)", ""]

    lines += ["## Accuracy against the PyTorch golden", ""]
    rows = []
    for r in acc:
        ids = [r["model"], r["precision"], r["target"], r["backend"], r["output"]]
        if not r["executed"]:
            rows.append(_row(ids + [f"not executed: {r.get('reason')}"] + [""] * 6))
        else:
            rows.append(_row(ids + [num(r["max_abs"], ".3g"), num(r["rel_l2"], ".3g"), num(r["cosine"], ".7f"),
                                    num(r["snr_db"], ".1f"), task(r), r["threshold"], r["verdict"]]))
    lines += _table(["model", "precision", "target", "backend", "output", "max abs", "rel L2", "cosine", "SNR dB",
                     "task acc (golden)", "threshold", "verdict"], rows)

    lines += ["## Per-layer drift", ""]
    if not view["drift"]:
        lines += ["Per-layer drift was not measured for this build.", ""]
    for d in view["drift"]:
        head = (f"first layer below {num(d['threshold'], 'g')}: **{d['first_below']}**" if d["first_below"]
                else f"every layer at or above cosine {num(d['threshold'], 'g')}")
        lines += [f"### {d['model']} {d['precision']} — {head}", ""]
        lines += _table(["layer", "module", "ONNX tensor", "cosine", "rel L2", ""],
                        [_row([r["layer"], r.get("module_type"), f"`{r['onnx_tensor']}`", num(r.get("cosine"), ".8f"),
                               num(r.get("rel_l2"), ".3g"),
                               "**◀ first below**" if r.get("first_below") else ("below" if r.get("below") else "")])
                         for r in d["layers"]])

    lines += ["## Latency", ""]
    keys = batches(view["latency"])
    if not view["latency"]:
        lines += ["ONNX Runtime latency was not measured for this build.", ""]
    else:
        rows = []
        for r in view["latency"]:
            if not r["executed"]:
                rows.append(_row([r["model"], r["precision"], f"not executed: {r.get('reason')}"]
                                 + [""] * (2 * len(keys) + 1)))
                continue
            ratios = ", ".join(f"b{k[1:]} ×{v:.2f}" for k, v in (r.get("p50_ratio_vs_fp16") or {}).items())
            flag = f"**no faster than fp16** ({ratios})" if r.get("no_faster_than_fp16") else ratios or "—"
            rows.append(_row([r["model"], r["precision"], f"{r['backend']} ({r.get('provider')})", r.get("device")]
                             + [ms(r, k, q) for k in keys for q in ("p50_ms", "p90_ms")] + [flag]))
        lines += _table(["model", "precision", "backend", "device"]
                        + [f"batch {k[1:]} p{q} ms" for k in keys for q in (50, 90)] + ["vs fp16"], rows)

    lines += ["## Engines", ""]
    if not view["engines"]:
        lines += ["No engines or bundles in this build.", ""]
    else:
        ekeys = batches(view["engines"]) or ["b1", "b8"]
        rows = []
        for r in view["engines"]:
            lat = ([ms(r["latency"], k, "p50_ms") for k in ekeys] if r["executed"]
                   else [r["reason"]] + [""] * (len(ekeys) - 1))
            rows.append(_row([r["model"], r["target"], r["precision"], r["kind"],
                              f"{r['backend']} {r.get('backend_version') or ''}", size(r["engine_bytes"]),
                              num(r["build_seconds"], ".2f"), precisions(r["layer_precisions"]),
                              ", ".join(r["plugins"]) or "—"] + lat))
        lines += _table(["model", "target", "precision", "kind", "backend", "size", "build s", "layer precisions",
                         "plugins"] + [f"batch {k[1:]} p50 ms" for k in ekeys], rows)

    lines += ["## Accuracy vs latency (Pareto)", ""]
    if "pareto" in image_files:
        lines += [f"![accuracy vs latency]({image_files['pareto']})", ""]
        lines += _table(["model", "precision", "where", "p50 ms", "cosine", "on frontier"],
                        [_row([p["model"], p["precision"], p["where"], num(p["latency_ms"], ".3f"),
                               num(p["cosine"], ".7f"), "yes" if p["pareto"] else ""]) for p in view["pareto"]])
    else:
        lines += ["No (accuracy, measured latency) pairs: nothing to plot.", ""]

    lines += ["## Rate-distortion (compressors)", ""]
    if "rate_distortion" in image_files:
        lines += [f"![rate-distortion]({image_files['rate_distortion']})", ""]
    else:
        lines += ["No compressor record carries bytes_per_image: rate-distortion plot skipped.", ""]

    lines += ["## Not run", ""]
    lines += [f"- {x}" for x in view["not_run"]] or ["Everything listed in this report was executed and measured."]
    r = view["reproducibility"]
    lines += ["", "## Reproducibility", "", f"```\n{r['command']}\n```", "",
              "Tool versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items() if v), ""]
    files = hashed_inputs(r)
    lines += _table(["what", "path", "sha256"], [_row([w, f"`{p}`", f"`{h}`"]) for w, p, h in files])
    return "\n".join(lines)
