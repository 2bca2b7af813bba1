"""What was not executed or not measured, grouped by reason: one line per reason with a count, then the items."""


def general_reason(reason: str, model, precision) -> str:
    """The reason with its artifact's name masked, so one cause read off many artifacts groups as one."""
    if model and precision:
        reason = reason.replace(f"{model}.{precision}", "<model>.<precision>")
    return reason


def items(acc: list[dict], eng: list[dict], latency: dict, drift: dict, refused: list[dict]) -> list[tuple]:
    """(what, reason) for everything that was not executed or not measured."""
    out = []
    engine_keys = {(e["model"], e["precision"], e["target"]) for e in eng if not e["executed"]}
    for r in acc:
        if not r["executed"]:
            what = "accuracy and latency" if (r["model"], r["precision"], r["target"]) in engine_keys else "accuracy"
            reason = r.get("reason") or "no reason given"
            out.append((f"{r['model']} {r['precision']} on {r['target']} ({r['backend']}), {what}",
                        general_reason(f"not executed: {reason}", r["model"], r["precision"])))
    covered = {(r["model"], r["precision"], r["target"]) for r in acc if not r["executed"]}
    for e in eng:
        if not e["executed"] and (e["model"], e["precision"], e["target"]) not in covered:
            out.append((f"{e['kind']} {e['model']} {e['precision']} for {e['target']}, latency",
                        general_reason(e["reason"], e["model"], e["precision"])))
    for r in refused:
        out.append((f"{r.get('precision')} for {r.get('target')}", f"not built: {r.get('reason')}"))
    pairs = {(r["model"], r["precision"]) for r in acc if r["executed"] and r["backend"] == "onnxruntime"}
    for model, precision in sorted(pairs):
        if precision not in latency.get(model, {}):
            out.append((f"{model} {precision}", "ONNX Runtime latency not measured"))
        if precision not in drift.get(model, {}):
            out.append((f"{model} {precision}", "per-layer drift not measured"))
    return out


def not_run(acc: list[dict], eng: list[dict], latency: dict, drift: dict, refused: list[dict]) -> list[dict]:
    """[{"reason", "count", "items"}], the largest group first."""
    groups: dict[str, list[str]] = {}
    for what, reason in items(acc, eng, latency, drift, refused):
        groups.setdefault(reason, []).append(what)
    return [{"reason": reason, "count": len(whats), "items": whats}
            for reason, whats in sorted(groups.items(), key=lambda kv: -len(kv[1]))]
