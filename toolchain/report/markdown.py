"""report.md: the same sections as index.html, as GitHub-flavoured Markdown (plots linked as files beside it)."""

from . import token_reduction
from .collect import hashed_inputs
from .decision import sized_targets
from .fmt import batches, mib, ms, num, precisions, size, task
from .payload import RULE, budget_text, route_text


def _row(cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _table(head, rows) -> list[str]:
    return [_row(head), _row(["---"] * len(head)), *rows, ""]


def _fold(summary: str, body: list[str]) -> list[str]:
    """A long table folded behind its summary line (GitHub renders <details> in Markdown)."""
    return ["<details><summary>" + summary + "</summary>", "", *body, "</details>", ""]


def _cell(rec: dict) -> str:
    if rec["precision"] is None:
        return f"— ({rec['why']})"
    task = f" · acc {num(rec['task_metric'], '.3f')}" if rec.get("task_metric") is not None else ""
    return f"**{rec['precision']}** {mib(rec['engine_bytes'])} · {num(rec['worst_snr_db'], '.1f')} dB{task}"


def _payload(view: dict) -> list[str]:
    p = view.get("payload")
    if not p:
        return []
    kinds = list(dict.fromkeys(r["kind"] for t in p["targets"] for r in t["references"]))
    rows = []
    for t in p["targets"]:
        refs = {r["kind"]: r for r in t["references"]}
        rows.append(_row([t["target"], f"**{route_text(t['choice'])}**" if t["choice"] else t["why"]]
                         + [f"{route_text(refs[k])} — {refs[k]['verdict']}" if k in refs else "—" for k in kinds]))
    lines = ["**Payload** " + RULE.format(floor=p["min_cosine"], budget=budget_text(p.get("decode_budget_ms"))), ""]
    lines += _table(["target", f"ship (cos ≥ {p['min_cosine']:g})", *[f"vs {k}" for k in kinds]], rows)
    return lines + ([view["references_skipped"], ""] if view.get("references_skipped") else [])


def _decision(view: dict, image_files: dict[str, str]) -> list[str]:
    d = view["decision"]
    lines = ["## What to ship", ""] + _payload(view)
    if not d["rows"]:
        return lines + ["No engines or bundles in this build: nothing to decide between.", ""]
    limits = "; ".join(f"{p}: `{t}`" for p, t in d["thresholds"].items())
    lines += [f"{d['rule']} Thresholds in use: {limits}. Cell: precision, engine size, worst-output SNR, "
              "task accuracy.", ""]
    recs = {(r["target"], r["model"]): r for r in d["recommendations"]}
    sized = sized_targets(d)
    lines += _table(["model \\ target", *sized],
                    [_row([m] + [_cell(recs[(t, m)]) if (t, m) in recs else "—" for t in sized])
                     for m in sorted({m for _, m in recs})])
    unsized = [t for t in d["targets"] if t not in sized]
    if unsized:
        lines += [f"{', '.join(unsized)}: deploy bundles only (engines are built on the device), so no engine size "
                  "to rank; each precision's fidelity is in the rows below.", ""]
    if "tradeoff" in image_files:
        lines += [f"![fidelity vs engine size and latency]({image_files['tradeoff']})", ""]
    for t in d["targets"]:
        rows = [r for r in d["rows"] if r["target"] == t]
        body = [_row([r["model"], r["precision"], num(r["worst_cosine"], ".6f"), num(r["worst_snr_db"], ".1f"),
                      task(r), {True: "yes", False: "no", None: "not validated"}[r["meets_thresholds"]],
                      mib(r["engine_bytes"]), mib(r.get("weight_bytes")),
                      ", ".join(f"{k} {v:.0%}" for k, v in (r["layer_shares"] or {}).items()) or "—",
                      num(r["build_seconds"], ".2f"),
                      num(r["latency_ms"], ".3f") if r["latency_ms"] is not None else "not run",
                      "**◀ ship**" if r["recommended"] else ""]) for r in rows]
        lines += _fold(f"{t}: {len(rows)} rows", _table(
            ["model", "precision", "worst cosine", "worst SNR dB", "task acc (golden)", "meets threshold",
             "engine size", "weight size", "layers per precision", "build s", "latency p50 ms", "recommended"], body))
    return lines


def render(view: dict, image_files: dict[str, str]) -> str:
    acc = view["accuracy"]
    lines = ["# ntc-export report", "",
             f"Build directory `{view['build_dir']}`; every path below is relative to it.", ""]
    lines += _decision(view, image_files)
    lines += ["## Summary", ""]
    lines += [f"- verdict: **{view['verdict']}** ({len(acc)} accuracy rows, "
              f"{sum(r['verdict'] == 'FAIL' for r in acc)} failing, "
              f"{sum(r['verdict'] == 'not executed' for r in acc)} not executed)",
              f"- data: `{view['data'].get('source')}` ({view['data'].get('samples')} held-out samples)"]
    flagged = [f"{r['model']} {r['precision']}" for r in view["latency"] if r.get("no_faster_than_fp16")]
    if flagged:
        lines.append(f"- **no faster than fp16**: {', '.join(flagged)}")
    lines += [f"- kept in high precision: {k}" for k in view.get("kept_high_precision", [])]
    lines += [f"- {k}" for k in view.get("int8_interfaces", [])]
    lines += [f"- first layer below the drift threshold: {d['model']} {d['precision']}: **{d['first_below']}**"
              for d in view["drift"] if d["first_below"]]
    lines += ["", "## Where each number was measured", "",
              "- accuracy rows: the device named by each row's backend/target (onnxruntime `cpu` = this machine's CPU, "
              "INT8/FP8 graphs with exact Q/DQ arithmetic as TensorRT computes it, not ORT's fused int8 kernels)",
              f"- latency measured on: {', '.join(view['devices']['measured_on']) or 'nothing'}",
              f"- TensorRT engines: {', '.join(view['devices']['tensorrt'])} (engine latency only where the engine "
              "ran; nothing is estimated)", ""]
    lines += ["## Not run", ""]
    if not view["not_run"]:
        lines += ["Everything listed in this report was executed and measured.", ""]
    for g in view["not_run"]:
        lines += [f"- **{g['count']}** × {g['reason']}", ""]
        lines += ["  " + x for x in _fold(f"{g['count']} item{'s' if g['count'] != 1 else ''}",
                                          [f"- {i}" for i in g["items"]])]

    lines += ["## Accuracy against the PyTorch golden", ""]
    rows = []
    for r in acc:
        ids = [r["model"], r["precision"], r["target"], r["backend"], r["output"]]
        if not r["executed"]:
            rows.append(_row(ids + [f"not executed: {r.get('reason')}"] + [""] * 6))
        else:
            rows.append(_row(ids + [num(r["max_abs"], ".3g"), num(r["rel_l2"], ".3g"), num(r["cosine"], ".7f"),
                                    num(r["snr_db"], ".1f"), task(r), r["threshold"], r["verdict"]]))
    counts = {k: sum(r["verdict"] == k for r in acc) for k in ("pass", "FAIL", "not executed")}
    lines += _fold(f"{len(acc)} rows: {counts['pass']} pass, {counts['FAIL']} FAIL, {counts['not executed']} not "
                   "executed", _table(["model", "precision", "target", "backend", "output", "max abs", "rel L2",
                                       "cosine", "SNR dB", "task acc (golden)", "threshold", "verdict"], rows))

    lines += ["## Per-layer drift", ""]
    if not view["drift"]:
        lines += ["Per-layer drift was not measured for this build.", ""]
    drift = []
    for d in view["drift"]:
        head = (f"first layer below {num(d['threshold'], 'g')}: **{d['first_below']}**" if d["first_below"]
                else f"every layer at or above cosine {num(d['threshold'], 'g')}")
        drift += [f"### {d['model']} {d['precision']} — {head}", ""]
        drift += _table(["layer", "module", "ONNX tensor", "cosine", "rel L2", ""],
                        [_row([r["layer"], r.get("module_type"), f"`{r['onnx_tensor']}`", num(r.get("cosine"), ".8f"),
                               num(r.get("rel_l2"), ".3g"),
                               "**◀ first below**" if r.get("first_below") else ("below" if r.get("below") else "")])
                         for r in d["layers"]])
    if drift:
        below = sum(1 for d in view["drift"] if d["first_below"])
        lines += _fold(f"{len(view['drift'])} graphs, {below} with a layer below its threshold", drift)

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
        lines += _fold(f"{len(rows)} engines and bundles", _table(
            ["model", "target", "precision", "kind", "backend", "size", "build s", "layer precisions", "plugins"]
            + [f"batch {k[1:]} p50 ms" for k in ekeys], rows))

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

    lines += ["## Token-count reducers and projectors on tasks", ""]
    lines += token_reduction.markdown_section(view["token_reduction"], image_files.get("token_reduction"))

    r = view["reproducibility"]
    lines += ["## Reproducibility", "", f"```\n{r['command']}\n```", "",
              "Tool versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items() if v), ""]
    files = hashed_inputs(r)
    lines += ["Paths are relative to the build directory; files outside it are named by file name and identified by "
              "their sha256.", ""]
    lines += _fold(f"{len(files)} files", _table(["what", "path", "sha256"],
                                                 [_row([w, f"`{p}`", f"`{h}`"]) for w, p, h in files]))
    return "\n".join(lines)
