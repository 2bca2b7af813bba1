"""index.html: one self-contained page (inline CSS, plots as base64 PNG, no scripts, nothing fetched)."""

import base64
from html import escape

from .collect import hashed_inputs
from .fmt import batches, ms, num, precisions, size, task

SECTIONS = [("summary", "Summary"), ("devices", "Where each number was measured"),
            ("accuracy", "Accuracy against the PyTorch golden"), ("drift", "Per-layer drift"),
            ("latency", "Latency"), ("engines", "Engines"), ("pareto", "Accuracy vs latency (Pareto)"),
            ("rate-distortion", "Rate-distortion (compressors)"), ("not-run", "Not run"),
            ("reproducibility", "Reproducibility")]

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#1d2430;
background:#fff;padding:0 16px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;border-bottom:2px solid #d9dee7;padding-bottom:4px;margin-top:32px}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:12.5px;width:100%}
th,td{border:1px solid #d9dee7;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#f2f4f8}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.fail td,td.fail{background:#fde2e1}.verdict-fail{color:#b3261e;font-weight:700}
.verdict-pass{color:#1b6e2d;font-weight:700}tr.notrun td{color:#5f6877;font-style:italic;background:#f7f7f9}
tr.first-below td{background:#fff1c2;font-weight:600}tr.below td{background:#fff8e1}
.flag{background:#ffe0b2;color:#8a4b00;padding:1px 6px;border-radius:3px;font-weight:600}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;color:#fff;font-weight:700}
.badge.pass{background:#1b6e2d}.badge.fail{background:#b3261e}
code,pre{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f2f4f8;border-radius:3px}
pre{padding:8px;overflow-x:auto;white-space:pre-wrap}img{max-width:100%;height:auto;border:1px solid #e3e6ec}
nav a{margin-right:12px}.muted{color:#5f6877}ul.notrun li{color:#5f6877}
"""


def _e(value) -> str:
    return escape("—" if value is None else str(value))


def _table(head: list[str], rows: list[str]) -> str:
    return ("<table><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _tr(cells: list[str], cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<tr{attr}>" + "".join(cells) + "</tr>"


def _td(value, numeric: bool = False, raw: bool = False) -> str:
    cls = ' class="n"' if numeric else ""
    return f"<td{cls}>{value if raw else _e(value)}</td>"


def _img(png: bytes | None, alt: str, ident: str) -> str:
    if png is None:
        return ""
    return (f'<img id="{ident}" alt="{escape(alt)}" width="750" height="460" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}">')


def _summary(v: dict) -> str:
    acc = v["accuracy"]
    n_fail = sum(r["verdict"] == "FAIL" for r in acc)
    n_skip = sum(r["verdict"] == "not executed" for r in acc)
    badge = "pass" if v["verdict"] == "PASS" else "fail"
    flagged = [f"{r['model']} {r['precision']}" for r in v["latency"] if r.get("no_faster_than_fp16")]
    drifted = [f"{d['model']} {d['precision']}: {d['first_below']}" for d in v["drift"] if d["first_below"]]
    items = [f"Verdict: <span class=\"badge {badge}\">{v['verdict']}</span> — {len(acc)} accuracy rows, "
             f"{n_fail} failing, {n_skip} not executed.",
             f"Data: <code>{_e(v['data'].get('source'))}</code>, {_e(v['data'].get('samples'))} held-out samples.",
             f"Models: {_e(', '.join(sorted({r['model'] for r in acc})) or 'none')}."]
    if flagged:
        items.append("<span class=\"flag\">no faster than fp16</span> " + _e(", ".join(flagged)))
    if drifted:
        items.append("First layer below the drift threshold: " + _e("; ".join(drifted)))
    items += ["Kept in high precision: " + _e(k) for k in v.get("kept_high_precision", [])]
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _devices(v: dict) -> str:
    measured = v["devices"]["measured_on"]
    return ("<ul>"
            f"<li>Accuracy rows: the device named by each row's backend/target (onnxruntime <code>cpu</code> = this "
            f"machine's CPU, INT8/FP8 graphs with exact Q/DQ arithmetic as TensorRT computes it, not ORT's fused "
            f"int8 kernels).</li>"
            f"<li>Latency measured on: {_e(', '.join(measured) or 'nothing (no latency measured)')}.</li>"
            f"<li>TensorRT engines: {_e(', '.join(v['devices']['tensorrt']))}. Engine latency is shown only where "
            f"the engine ran; nothing is estimated.</li></ul>")


def _accuracy(rows: list[dict]) -> str:
    head = ["model", "precision", "target", "backend", "output", "max abs", "rel L2", "cosine", "SNR dB",
            "task acc (golden)", "threshold", "verdict"]
    body = []
    for r in rows:
        ids = [_td(r[k]) for k in ("model", "precision", "target", "backend", "output")]
        if not r["executed"]:
            body.append(_tr(ids + [f"<td colspan=\"7\">not executed: {_e(r.get('reason'))}</td>"], "notrun"))
            continue
        verdict = f"<span class=\"verdict-{'pass' if r['verdict'] == 'pass' else 'fail'}\">{_e(r['verdict'])}</span>"
        body.append(_tr(ids + [_td(num(r["max_abs"], ".3g"), True), _td(num(r["rel_l2"], ".3g"), True),
                               _td(num(r["cosine"], ".7f"), True), _td(num(r["snr_db"], ".1f"), True),
                               _td(task(r), True), _td(r["threshold"]), _td(verdict, raw=True)],
                        "fail" if r["verdict"] == "FAIL" else ""))
    return _table(head, body) if body else "<p class=\"muted\">No validation records.</p>"


def _drift(sections: list[dict]) -> str:
    if not sections:
        return "<p class=\"muted\">Per-layer drift was not measured for this build.</p>"
    out = []
    for d in sections:
        first = (f"first layer below {num(d['threshold'], 'g')}: <span class=\"flag\">{_e(d['first_below'])}</span>"
                 if d["first_below"] else f"every layer at or above cosine {num(d['threshold'], 'g')}")
        out.append(f"<h3 id=\"drift-{escape(d['model'])}-{escape(d['precision'])}\">{_e(d['model'])} "
                   f"{_e(d['precision'])} — {first}</h3>")
        body = []
        for r in d["layers"]:
            cls = "first-below" if r.get("first_below") else ("below" if r.get("below") else "")
            mark = "◀ first below" if r.get("first_below") else ("below" if r.get("below") else "")
            body.append(_tr([_td(r["layer"]), _td(r.get("module_type")), _td(f"<code>{_e(r['onnx_tensor'])}</code>",
                             raw=True), _td(num(r.get("cosine"), ".8f"), True), _td(num(r.get("rel_l2"), ".3g"), True),
                             _td(num(r.get("max_abs"), ".3g"), True), _td(r.get("note") or mark)], cls))
        out.append(_table(["layer", "module", "ONNX tensor", "cosine", "rel L2", "max abs", ""], body))
    return "".join(out)


def _latency(rows: list[dict]) -> str:
    if not rows:
        return "<p class=\"muted\">ONNX Runtime latency was not measured for this build.</p>"
    keys = batches(rows)
    head = ["model", "precision", "backend", "device"] + [f"batch {k[1:]} p{q} ms" for k in keys for q in (50, 90)] + [
        "vs fp16"]
    body = []
    for r in rows:
        if not r["executed"]:
            body.append(_tr([_td(r["model"]), _td(r["precision"]),
                             f"<td colspan=\"{len(head) - 2}\">not executed: {_e(r.get('reason'))}</td>"], "notrun"))
            continue
        ratios = r.get("p50_ratio_vs_fp16") or {}
        rel = ", ".join(f"b{k[1:]} ×{v:.2f}" for k, v in ratios.items())
        note = (f"<span class=\"flag\">no faster than fp16</span> {escape(rel)}" if r.get("no_faster_than_fp16")
                else escape(rel) or "—")
        body.append(_tr([_td(r["model"]), _td(r["precision"]), _td(f"{r['backend']} ({r.get('provider')})"),
                         _td(r.get("device"))] + [_td(ms(r, k, q), True) for k in keys for q in ("p50_ms", "p90_ms")]
                        + [_td(note, raw=True)]))
    caption = ("<p class=\"muted\">Batch = token grids (images) per call. ‘no faster than fp16’ flags a narrower "
               "precision whose p50 is not at least 5% below fp16's at every batch size on the same backend.</p>")
    return caption + _table(head, body)


def _engines(rows: list[dict]) -> str:
    if not rows:
        return "<p class=\"muted\">No engines or bundles in this build (engines/manifest.json absent or empty).</p>"
    keys = batches(rows) or ["b1", "b8"]
    head = ["model", "target", "precision", "kind", "backend", "size", "build s", "layer precisions", "plugins"] + [
        f"batch {k[1:]} p50 ms" for k in keys]
    body = []
    for r in rows:
        cells = [_td(r[k]) for k in ("model", "target", "precision", "kind")]
        cells += [_td(f"{r['backend']} {r.get('backend_version') or ''}"), _td(size(r["engine_bytes"]), True),
                  _td(num(r["build_seconds"], ".2f"), True), _td(precisions(r["layer_precisions"])),
                  _td(", ".join(r["plugins"]) or "—")]
        if r["executed"]:
            cells += [_td(ms(r["latency"], k, "p50_ms"), True) for k in keys]
            body.append(_tr(cells))
        else:
            cells.append(f"<td colspan=\"{len(keys)}\" class=\"engine-not-run\">{_e(r['reason'])}</td>")
            body.append(_tr(cells, "notrun"))
    return _table(head, body)


def _pareto(v: dict, png: bytes | None) -> str:
    if png is None:
        return "<p class=\"muted\">No (accuracy, measured latency) pairs: nothing to plot.</p>"
    body = [_tr([_td(p["model"]), _td(p["precision"]), _td(p["where"]), _td(num(p["latency_ms"], ".3f"), True),
                 _td(num(p["cosine"], ".7f"), True), _td("yes" if p["pareto"] else "")]) for p in v["pareto"]]
    return (_img(png, "accuracy vs latency Pareto plot", "pareto-plot")
            + _table(["model", "precision", "where", f"p50 ms (batch {v['pareto'][0]['batch']})", "cosine",
                      "on frontier"], body))


def _rate(v: dict, png: bytes | None) -> str:
    if png is None:
        return "<p class=\"muted\">No compressor record carries bytes_per_image: rate-distortion plot skipped.</p>"
    body = [_tr([_td(p["model"]), _td(p["precision"]), _td(p["target"]), _td(p["bytes_per_image"], True),
                 _td(num(p["cosine"], ".6f"), True), _td(num(p["task_metric"], ".4f"), True)])
            for p in v["rate_distortion"]]
    return (_img(png, "rate-distortion plot", "rate-distortion-plot")
            + _table(["model", "precision", "target", "bytes/image", "cosine", "probe accuracy"], body))


def _not_run(lines: list[str]) -> str:
    if not lines:
        return "<p>Everything listed in this report was executed and measured.</p>"
    return "<ul class=\"notrun\">" + "".join(f"<li>{_e(x)}</li>" for x in lines) + "</ul>"


def _repro(r: dict) -> str:
    files = hashed_inputs(r)
    body = [_tr([_td(w), _td(f"<code>{_e(p)}</code>", raw=True), _td(f"<code>{_e(h)}</code>", raw=True)])
            for w, p, h in files]
    versions = ", ".join(f"{k} {v}" for k, v in r["versions"].items() if v)
    calib = "".join(f"<li>{_e(m)} {_e(p)}: {_e(c)}</li>" for m, per in r["calibration"].items()
                    for p, c in per.items())
    return (f"<h3>Command</h3><pre>{_e(r['command'])}</pre><h3>Tool versions</h3><p>{_e(versions)}</p>"
            + (f"<h3>Calibration</h3><ul>{calib}</ul>" if calib else "")
            + "<h3>Inputs, artifacts and plugin libraries (sha256)</h3>" + _table(["what", "path", "sha256"], body))


def render(view: dict, images: dict[str, bytes | None]) -> str:
    parts = {
        "summary": _summary(view), "devices": _devices(view), "accuracy": _accuracy(view["accuracy"]),
        "drift": _drift(view["drift"]), "latency": _latency(view["latency"]), "engines": _engines(view["engines"]),
        "pareto": _pareto(view, images.get("pareto")), "rate-distortion": _rate(view, images.get("rate_distortion")),
        "not-run": _not_run(view["not_run"]), "reproducibility": _repro(view["reproducibility"]),
    }
    nav = "".join(f"<a href=\"#{i}\">{escape(t)}</a>" for i, t in SECTIONS)
    body = "".join(f"<section id=\"{i}\"><h2>{escape(t)}</h2>{parts[i]}</section>" for i, t in SECTIONS)
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ntc-export report</title>"
            f"<style>{CSS}</style></head><body><h1>ntc-export report</h1>"
            f"<p class=\"muted\">generated {escape(view['generated_at'])} from <code>{_e(view['build_dir'])}</code></p>"
            f"<nav>{nav}</nav>{body}</body></html>\n")
