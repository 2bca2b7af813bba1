"""index.html: one self-contained page (inline CSS, plots as base64 PNG, no scripts, nothing fetched)."""

import base64
from html import escape

from . import token_reduction
from .collect import hashed_inputs
from .decision import sized_targets
from .fmt import batches, mib, ms, num, precisions, size, task
from .payload import RULE as PAYLOAD_RULE, budget_text, route_text

SECTIONS = [("decision", "What to ship"), ("summary", "Summary"), ("devices", "Where each number was measured"),
            ("not-run", "Not run"), ("accuracy", "Accuracy against the PyTorch golden"), ("drift", "Per-layer drift"),
            ("latency", "Latency"), ("engines", "Engines"), ("pareto", "Accuracy vs latency (Pareto)"),
            ("rate-distortion", "Rate-distortion (compressors)"),
            ("token-reduction", "Token-count reducers and projectors on tasks"), ("reproducibility", "Reproducibility")]

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:12px auto;max-width:1240px;color:#1d2430;
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
section#decision h2{margin-top:10px}p.rule{margin:4px 0 6px;font-size:12.5px}
div.decide{display:flex;gap:10px;align-items:flex-start}div.decide>div{flex:0 0 auto;width:min-content}
table.matrix{width:auto;margin:0}table.matrix td{white-space:nowrap;padding:3px 6px}td.none{color:#b3261e}
tr.recommended td{background:#e3f4e6;font-weight:600}
img#tradeoff-plot{border:none;flex:1 1 400px;min-width:0;max-width:640px;height:auto}
details{margin:6px 0 10px}table.payload td{white-space:nowrap;font-size:12px;padding:3px 6px}summary{cursor:pointer;font-weight:600;color:#24418f}
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


def _img(png: bytes | None, alt: str, ident: str, width: int = 750, height: int = 460) -> str:
    if png is None:
        return ""
    return (f'<img id="{ident}" alt="{escape(alt)}" width="{width}" height="{height}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}">')


def _fold(summary: str, inner: str, ident: str = "") -> str:
    """A long table folded behind its one-line summary (open it to read the rows)."""
    attr = f' id="{ident}"' if ident else ""
    return f"<details{attr}><summary>{summary}</summary>{inner}</details>"


def _cell(rec: dict) -> str:
    """A recommendation as one matrix cell: precision, engine size, worst SNR (or why there is none)."""
    if rec["precision"] is None:
        return f'<td class="none" title="{escape(rec["why"])}">— {_e(rec["why"].split(";")[0])}</td>'
    task = f"; task accuracy {num(rec['task_metric'], '.4f')}" if rec.get("task_metric") is not None else ""
    return (f'<td title="{escape(rec["why"] + task)}"><b>{_e(rec["precision"])}</b> {mib(rec["engine_bytes"])} · '
            f'{num(rec["worst_snr_db"], ".1f")} dB</td>')


def _shares(shares: dict | None) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in shares.items()) if shares else "—"


def _decision_rows(rows: list[dict]) -> str:
    head = ["model", "precision", "worst cosine", "worst SNR dB", "task acc (golden)", "meets threshold",
            "engine size", "weight size", "layers per precision", "build s", "latency p50 ms", "recommended"]
    body = []
    for r in rows:
        meets = {True: "yes", False: "no", None: "not validated"}[r["meets_thresholds"]]
        latency = (_td(num(r["latency_ms"], ".3f"), True) if r["latency_ms"] is not None
                   else f'<td class="muted" title="{escape(r["not_run"] or "")}">not run</td>')
        body.append(_tr([_td(r["model"]), _td(r["precision"]), _td(num(r["worst_cosine"], ".6f"), True),
                         _td(num(r["worst_snr_db"], ".1f"), True), _td(task(r), True),
                         _td(meets, raw=False), _td(mib(r["engine_bytes"]), True),
                         _td(mib(r.get("weight_bytes")), True), _td(_shares(r["layer_shares"])),
                         _td(num(r["build_seconds"], ".2f"), True), latency, _td("◀ ship" if r["recommended"] else "")],
                        "recommended" if r["recommended"] else ("fail" if r["meets_thresholds"] is False else "")))
    return _table(head, body)


def _payload(v: dict) -> str:
    """Which payload to ship per target, and the reference routes it beats or loses to at the same fidelity."""
    p = v.get("payload")
    if not p:
        return ""
    kinds = list(dict.fromkeys(r["kind"] for t in p["targets"] for r in t["references"]))
    body = []
    for t in p["targets"]:
        refs = {r["kind"]: r for r in t["references"]}
        ship = t["choice"]
        cells = [_td(t["target"]), f'<td title="token cosine {ship["cosine"]:.4f}; {escape(t["why"])}"><b>'
                 f'{escape(route_text(ship, cosine=False))}</b></td>' if ship else
                 _td(f'<span class="muted">{escape(t["why"])}</span>', raw=True)]
        cells += [f'<td title="token cosine {refs[k]["cosine"]:.4f}; {escape(refs[k]["verdict"])}">'
                  f'{escape(route_text(refs[k], cosine=False))} · <i>{escape(refs[k]["verdict"].split(" (")[0])}</i>'
                  "</td>" if k in refs else _td("—") for k in kinds]
        body.append(_tr(cells))
    rule_text = PAYLOAD_RULE.format(floor=p["min_cosine"], budget=budget_text(p.get("decode_budget_ms")))
    rule = _fold(f"<b>Payload</b> per target: the smallest reaching token cosine ≥ {p['min_cosine']:g}, against "
                 "the routes a user could take instead (hover: bytes and decode as multiples of ours)",
                 f'<p class="rule">{escape(rule_text)}</p>')
    skipped = (f'<p class="muted">{escape(v["references_skipped"])}</p>' if v.get("references_skipped") else "")
    table = _table(["target", f"ship (cos ≥ {p['min_cosine']:g})"] + [f"vs {k}" for k in kinds], body)
    return rule + table.replace("<table>", '<table id="payload-table" class="payload">', 1) + skipped


def _decision(v: dict, png: bytes | None) -> str:
    d = v["decision"]
    if not d["rows"]:
        return _payload(v) + "<p class=\"muted\">No engines or bundles in this build: nothing to decide between.</p>"
    recs = {(r["target"], r["model"]): r for r in d["recommendations"]}
    models = sorted({m for _, m in recs})
    sized = sized_targets(d)
    body = [_tr([_td(m)] + [_cell(recs[(t, m)]) if (t, m) in recs else _td("—") for t in sized]) for m in models]
    matrix = ('<table class="matrix" id="decision-table"><thead><tr><th>model \\ target</th>'
              + "".join(f"<th>{_e(t)}</th>" for t in sized) + "</tr></thead><tbody>" + "".join(body)
              + "</tbody></table>")
    unsized = [t for t in d["targets"] if t not in sized]
    note = (f'<p class="muted">{_e(", ".join(unsized))}: deploy bundles only (engines are built on the device), so '
            "no engine size to rank; each precision's fidelity is in the rows below.</p>" if unsized else "")
    limits = "; ".join(f"{p}: {t}" for p, t in d["thresholds"].items())
    rule = _fold("<b>Precision</b> per target and model: the smallest engine meeting its threshold (each cell: "
                 "precision, engine size, worst-output SNR; hover: why)",
                 f'<p class="rule">{_e(d["rule"])} Thresholds in use: {_e(limits)}. The task accuracy, where the model '
                 "has a task head, is in each cell's hover text.</p>")
    folds = []
    for t in d["targets"]:
        rows = [r for r in d["rows"] if r["target"] == t]
        precs = ", ".join(dict.fromkeys(r["precision"] for r in rows))
        reasons = sorted({r["not_run"] for r in rows if r["not_run"]})
        lat = f"; latency not run: {reasons[0]}" if len(reasons) == 1 else ""
        folds.append(_fold(f"{_e(t)}: {len(rows)} rows ({_e(precs)} per model){_e(lat)}", _decision_rows(rows),
                           f"decision-{escape(t)}"))
    side = _img(png, "fidelity vs engine size and latency", "tradeoff-plot", 640, 360)
    return (_payload(v) + rule + f'<div class="decide"><div>{matrix}{note}</div>{side}</div>' + "".join(folds))


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
    items += [_e(k) for k in v.get("int8_interfaces", [])]
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
    if not body:
        return "<p class=\"muted\">No validation records.</p>"
    counts = {k: sum(r["verdict"] == k for r in rows) for k in ("pass", "FAIL", "not executed")}
    return _fold(f"{len(rows)} rows: {counts['pass']} pass, {counts['FAIL']} FAIL, {counts['not executed']} not "
                 "executed", _table(head, body), "accuracy-rows")


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
    below = sum(1 for d in sections if d["first_below"])
    return _fold(f"{len(sections)} graphs, {below} with a layer below its threshold", "".join(out), "drift-rows")


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
    return caption + _fold(f"{len(rows)} rows, {sum(bool(r.get('no_faster_than_fp16')) for r in rows)} flagged "
                           "no faster than fp16", _table(head, body), "latency-rows")


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
    kinds = {k: sum(r["kind"] == k for r in rows) for k in ("engine", "bundle")}
    return _fold(f"{kinds['engine']} engines, {kinds['bundle']} deploy bundles, "
                 f"{sum(r['executed'] for r in rows)} executed here", _table(head, body), "engine-rows")


def _pareto(v: dict, png: bytes | None) -> str:
    if png is None:
        return "<p class=\"muted\">No (accuracy, measured latency) pairs: nothing to plot.</p>"
    body = [_tr([_td(p["model"]), _td(p["precision"]), _td(p["where"]), _td(num(p["latency_ms"], ".3f"), True),
                 _td(num(p["cosine"], ".7f"), True), _td("yes" if p["pareto"] else "")]) for p in v["pareto"]]
    return (_img(png, "accuracy vs latency Pareto plot", "pareto-plot")
            + _fold(f"{len(body)} points, {sum(p['pareto'] for p in v['pareto'])} on the frontier",
                    _table(["model", "precision", "where", f"p50 ms (batch {v['pareto'][0]['batch']})", "cosine",
                            "on frontier"], body)))


def _rate(v: dict, png: bytes | None) -> str:
    if png is None:
        return "<p class=\"muted\">No compressor record carries bytes_per_image: rate-distortion plot skipped.</p>"
    body = [_tr([_td(p["model"]), _td(p["precision"]), _td(p["target"]), _td(p["bytes_per_image"], True),
                 _td(num(p["cosine"], ".6f"), True), _td(num(p["task_metric"], ".4f"), True)])
            for p in v["rate_distortion"]]
    return (_img(png, "rate-distortion plot", "rate-distortion-plot")
            + _table(["model", "precision", "target", "bytes/image", "cosine", "probe accuracy"], body))


def _token_reduction(table: dict | None, png: bytes | None) -> str:
    if not table:
        return ("<p class=\"muted\">No token-reduction table in this build directory (<code>ntc-export report "
                "BUILD_DIR --token-reduction RD.json</code> adds the one <code>ntc-export rd</code> wrote).</p>")
    body = [_tr([_td(c, numeric=i in range(2, 7)) for i, c in enumerate(token_reduction.cells(r))])
            for r in table["rows"]]
    return (_img(png, "token reduction plot", "token-reduction-plot") + f"<p>{_e(token_reduction.caption(table))}</p>"
            + _table(token_reduction.HEAD, body))


def _not_run(groups: list[dict]) -> str:
    if not groups:
        return "<p>Everything listed in this report was executed and measured.</p>"
    rows = [_tr([_td(g["count"], True), _td(g["reason"]),
                 _td(_fold(f"{g['count']} item{'s' if g['count'] != 1 else ''}",
                           "<ul class=\"notrun\">" + "".join(f"<li>{_e(x)}</li>" for x in g["items"]) + "</ul>"),
                     raw=True)]) for g in groups]
    return _table(["count", "reason", "items"], rows)


def _repro(r: dict) -> str:
    files = hashed_inputs(r)
    body = [_tr([_td(w), _td(f"<code>{_e(p)}</code>", raw=True), _td(f"<code>{_e(h)}</code>", raw=True)])
            for w, p, h in files]
    versions = ", ".join(f"{k} {v}" for k, v in r["versions"].items() if v)
    calib = "".join(f"<li>{_e(m)} {_e(p)}: {_e(c)}</li>" for m, per in r["calibration"].items()
                    for p, c in per.items())
    return (f"<h3>Command</h3><pre>{_e(r['command'])}</pre><h3>Tool versions</h3><p>{_e(versions)}</p>"
            + (f"<h3>Calibration</h3><ul>{calib}</ul>" if calib else "")
            + "<h3>Inputs, artifacts and plugin libraries (sha256)</h3><p class=\"muted\">Paths are relative to the "
            "build directory; files outside it are named by file name and identified by their sha256.</p>"
            + _fold(f"{len(body)} files", _table(["what", "path", "sha256"], body), "hashed-files"))


def render(view: dict, images: dict[str, bytes | None]) -> str:
    parts = {
        "decision": _decision(view, images.get("tradeoff")),
        "summary": _summary(view), "devices": _devices(view), "accuracy": _accuracy(view["accuracy"]),
        "drift": _drift(view["drift"]), "latency": _latency(view["latency"]), "engines": _engines(view["engines"]),
        "pareto": _pareto(view, images.get("pareto")), "rate-distortion": _rate(view, images.get("rate_distortion")),
        "token-reduction": _token_reduction(view["token_reduction"], images.get("token_reduction")),
        "not-run": _not_run(view["not_run"]), "reproducibility": _repro(view["reproducibility"]),
    }
    nav = "".join(f"<a href=\"#{i}\">{escape(t)}</a>" for i, t in SECTIONS)
    body = "".join(f"<section id=\"{i}\"><h2>{escape(t)}</h2>{parts[i]}</section>" for i, t in SECTIONS)
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ntc-export report</title>"
            f"<style>{CSS}</style></head><body><h1>ntc-export report "
            f"<span class=\"badge {'pass' if view['verdict'] == 'PASS' else 'fail'}\">{_e(view['verdict'])}</span></h1>"
            f"<p class=\"muted\">generated {escape(view['generated_at'])} from build directory "
            f"<code>{_e(view['build_dir'])}</code> (paths below are relative to it)</p>"
            f"<nav>{nav}</nav>{body}</body></html>\n")
