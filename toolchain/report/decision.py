"""The decision table: per target and model, each precision's fidelity, engine size, weight size, layer mix, build time
and latency in one row, and the precision to ship (the smallest engine whose every validated output meets its
threshold). Engines, not weights, are ranked: an engine adds kernels and fp32 islands to its weights, so a Q/DQ graph
with half the weight bytes can still build the larger engine; weight bytes stand beside it to show why.
"""

from .latency_flags import is_batch_key

SIZE_MARGIN = 0.10  # engines closer in size than this are not told apart by size (our small graphs: a few %)
RULE = ("Recommended per target and model: the smallest engine (bytes) among the precisions whose every output, "
        "validated in ONNX Runtime on the held-out data, meets its precision's threshold; where passing engines "
        f"differ by under {SIZE_MARGIN:.0%} in size, size does not decide: the measured engine latency does where "
        "every one of them has one, else the higher worst-output SNR.")


def _validation(acc: list[dict], model: str, precision: str, onnx: str | None) -> list[dict]:
    """The executed ONNX Runtime rows of the graph an engine was built from (same ONNX file), else of every
    lowering validated for (model, precision): the worst of them then speaks for the engine."""
    rows = [r for r in acc if r["executed"] and r["backend"] == "onnxruntime" and r["model"] == model
            and r["precision"] == precision]
    return [r for r in rows if onnx and r.get("artifact") == onnx] or rows


def _worst(rows: list[dict], key: str):
    values = [r[key] for r in rows if r.get(key) is not None]
    return min(values) if values else None


def _task(rows: list[dict]) -> tuple:
    """(task metric, its PyTorch golden) of the output that carries one (a task head's logits)."""
    row = next((r for r in rows if r.get("task_metric") is not None), None)
    return (row["task_metric"], row.get("task_metric_golden")) if row else (None, None)


def layer_shares(counts: dict | None) -> dict | None:
    """Fraction of the engine's layers per precision ("none": layers without a precision, e.g. shuffles)."""
    total = sum((counts or {}).values())
    return {p: n / total for p, n in sorted(counts.items(), key=lambda kv: -kv[1])} if total else None


def _p50(lat: dict) -> float | None:
    """p50 at the smallest batch measured (batch 1 where present)."""
    keys = sorted((k for k in lat if is_batch_key(k)), key=lambda k: int(k[1:]))
    return lat[keys[0]]["p50_ms"] if keys else None


def decision_row(engine: dict, acc: list[dict]) -> dict:
    rows = _validation(acc, engine["model"], engine["precision"], engine.get("onnx"))
    task, golden = _task(rows)
    lat = engine["latency"] or {}
    return {"target": engine["target"], "model": engine["model"], "precision": engine["precision"],
            "kind": engine["kind"], "outputs": len(rows), "worst_cosine": _worst(rows, "cosine"),
            "worst_snr_db": _worst(rows, "snr_db"), "task_metric": task, "task_metric_golden": golden,
            "thresholds": sorted({r["threshold"] for r in rows if r.get("threshold")}),
            "meets_thresholds": all(r["verdict"] == "pass" for r in rows) if rows else None,
            "engine_bytes": engine.get("engine_bytes"), "weight_bytes": engine.get("weight_bytes"),
            "layer_shares": layer_shares(engine.get("layer_precisions")),
            "build_seconds": engine.get("build_seconds"),
            "latency_ms": _p50(lat) if engine["executed"] else None,
            "latency_device": engine.get("device") if engine["executed"] else None,
            "not_run": None if engine["executed"] else engine["reason"], "recommended": False}


def _db(value) -> str:
    return "—" if value is None else f"{value:.1f} dB"


def recommend(rows: list[dict]) -> dict:
    """The recommendation for one (target, model) from its rows; marks the chosen row."""
    first = rows[0]
    out = {"target": first["target"], "model": first["model"], "precision": None, "engine_bytes": None,
           "worst_snr_db": None, "task_metric": None}
    if all(r["engine_bytes"] is None for r in rows):
        return {**out, "why": "no engine built here (deploy bundle: built on the device), so no size to rank"}
    passing = [r for r in rows if r["meets_thresholds"] and r["engine_bytes"] is not None]
    if not passing:
        return {**out, "why": "no precision meets its threshold"}
    smallest = min(r["engine_bytes"] for r in passing)
    close = [r for r in passing if r["engine_bytes"] <= smallest * (1 + SIZE_MARGIN)]
    timed = all(r["latency_ms"] is not None for r in close)
    snr = lambda r: r["worst_snr_db"] if r["worst_snr_db"] is not None else float("-inf")  # noqa: E731
    best = min(close, key=lambda r: (r["latency_ms"], -snr(r)) if timed else (-snr(r), r["engine_bytes"]))
    best["recommended"] = True
    smaller = [r["precision"] for r in rows if not r["meets_thresholds"] and r["engine_bytes"] is not None
               and r["engine_bytes"] < best["engine_bytes"]]
    if len(close) > 1:
        names = ", ".join(r["precision"] for r in sorted(close, key=lambda r: r["engine_bytes"]))
        why = (f"{names} within {SIZE_MARGIN:.0%} in engine size, so size does not decide: "
               + ("lowest measured latency" if timed else "highest worst-output SNR (no latency measured for all)"))
    else:
        why = "smallest passing engine"
    why += f"; smaller but below threshold: {', '.join(smaller)}" if smaller else ""
    others = sorted((r for r in passing if r is not best), key=lambda r: r["engine_bytes"])
    if others:  # what the next-smallest passing engine would cost and give, to weigh against the rule's choice
        nxt = others[0]
        why += (f"; next: {nxt['precision']} {nxt['engine_bytes'] / best['engine_bytes'] - 1:+.1%} bytes, "
                f"{_db(nxt['worst_snr_db'])} vs {_db(best['worst_snr_db'])}")
    return {**out, "precision": best["precision"], "engine_bytes": best["engine_bytes"],
            "worst_snr_db": best["worst_snr_db"], "task_metric": best["task_metric"], "why": why}


def thresholds(acc: list[dict]) -> dict[str, str]:
    """precision -> the threshold its validation rows were held to (as the rows state it)."""
    out: dict[str, set] = {}
    for r in acc:
        if r["backend"] == "onnxruntime" and r.get("threshold"):
            out.setdefault(r["precision"], set()).add(r["threshold"])
    return {p: " / ".join(sorted(t)) for p, t in out.items()}


def sized_targets(table: dict) -> list[str]:
    """Targets with at least one engine of known size (deploy-bundle-only targets have nothing to rank)."""
    return [t for t in table["targets"] if any(r["engine_bytes"] is not None for r in table["rows"]
                                               if r["target"] == t)]


def decision(acc: list[dict], engines: list[dict]) -> dict:
    """{"rule", "thresholds", "rows", "recommendations"}: rows ordered by target, model, engine size."""
    rows = [decision_row(e, acc) for e in engines]
    targets = list(dict.fromkeys(r["target"] for r in rows))
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["target"], r["model"]), []).append(r)
    recommendations = [recommend(g) for g in groups.values()]
    order = {t: i for i, t in enumerate(targets)}
    rows.sort(key=lambda r: (order[r["target"]], r["model"], r["engine_bytes"] is None, r["engine_bytes"] or 0))
    recommendations.sort(key=lambda r: (order[r["target"]], r["model"]))
    return {"rule": RULE, "thresholds": thresholds(acc), "targets": targets, "rows": rows,
            "recommendations": recommendations}
