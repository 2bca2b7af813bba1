"""The payload decision: per target, the smallest compressor payload whose decoded tokens reach the fidelity floor
(within the decode-cost budget, when one is set), read against the routes a user could take instead — the picture
kept as AVIF/JPEG and re-encoded by the ViT, plain token quantization, the PCA line — at the same floor.

Decode cost per target is the roofline lower bound (evaluate/roofline.py): measured CPU time does not transfer to a
GPU, and no GPU ran here; the report labels it as a bound.
"""

from .fmt import size


def times(ratio: float) -> str:
    """A ratio as a multiple: two significant digits, whole numbers from 10 up."""
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.2g}x"


def duration(ms: float) -> str:
    """A time in ms, or in µs below 0.1 ms (decode bounds of small graphs)."""
    return f"{ms:.3g} ms" if ms >= 0.1 else f"{ms * 1e3:.3g} µs"

REFERENCE_FAMILIES = ("pixels", "quant", "pca")
RULE = ("per target: the smallest compressor payload whose decoded tokens reach token cosine >= {floor:g} on the "
        "held-out data{budget}, beside the smallest route of each kind a user could take instead at the same floor "
        "(the picture kept as AVIF/JPEG and re-encoded by the ViT, plain token quantization, the PCA line). Decode "
        "cost per target is a roofline lower bound (>=: FLOPs and bytes moved over the target's peak throughput and "
        "bandwidth), not a measurement. Flags: --min-cosine, --decode-budget-ms.")
KIND = {"pixels": "picture + ViT", "quant": "token quantization", "pca": "PCA line"}


def bound_ms(point: dict, target: str) -> float | None:
    """The point's decode roofline bound on `target` (ms per image), None where not costed."""
    entry = ((point.get("decode_cost") or {}).get("bound_ms") or {}).get(target) or {}
    return entry.get("bound_ms")


def is_codec(point: dict) -> bool:
    """A trained compressor's point (the main job's compression points name their family; references too)."""
    return point.get("family") is not None and point["family"] not in REFERENCE_FAMILIES


def route_text(line: dict | None, cosine: bool = True) -> str:
    """A payload or reference route in one line: name, bytes per image, (token cosine,) decode bound."""
    if line is None:
        return "—"
    bound = f"≥{duration(line['bound_ms'])}" if line.get("bound_ms") is not None else "bound —"
    cos = f" · cos {line['cosine']:.4f}" if cosine else ""
    return f"{line['model']} {size(line['bytes_per_image'])}{cos} · {bound}"


def budget_text(budget_ms) -> str:
    return f" and a decode bound within {budget_ms:g} ms" if budget_ms is not None else ""


def bound_targets(point: dict) -> list[str]:
    return list(((point.get("decode_cost") or {}).get("bound_ms") or {}))


def _line(p: dict | None, target: str) -> dict | None:
    if p is None:
        return None
    return {"model": p["model"], "family": p.get("family"), "bytes_per_image": p["bytes_per_image"],
            "cosine": p["cosine"], "bound_ms": bound_ms(p, target)}


def _verdict(ours: dict, ref: dict) -> str:
    """How our choice compares with a reference route meeting the same floor: beats it, loses to it, or trades
    (its bytes and decode bound as multiples of ours)."""
    b = f"{times(ref['bytes_per_image'] / ours['bytes_per_image'])} bytes"
    fewer_bytes = ours["bytes_per_image"] <= ref["bytes_per_image"]
    if ours["bound_ms"] is None or ref["bound_ms"] is None or ours["bound_ms"] <= 0:
        return f"{'beats it' if fewer_bytes else 'loses to it'} on bytes ({b}; decode bound unknown)"
    cheaper = ours["bound_ms"] <= ref["bound_ms"]
    word = "beats it" if fewer_bytes and cheaper else "loses to it" if not (fewer_bytes or cheaper) else "trades"
    return f"{word} ({b}, {times(ref['bound_ms'] / ours['bound_ms'])} decode)"


def choose(points: list[dict], target: str, min_cosine: float, budget_ms: float | None) -> dict:
    """One target's payload decision from the rate-distortion points (learned codecs and references)."""
    ok = [p for p in points if p["cosine"] >= min_cosine
          and (budget_ms is None or (bound_ms(p, target) is not None and bound_ms(p, target) <= budget_ms))]
    learned = [p for p in ok if is_codec(p)]
    best = min(learned, key=lambda p: p["bytes_per_image"]) if learned else None
    refs = []
    for family in REFERENCE_FAMILIES:  # each reference kind's smallest route meeting the floor (any cost)
        meeting = [p for p in points if p.get("family") == family and p["cosine"] >= min_cosine]
        ref = _line(min(meeting, key=lambda p: p["bytes_per_image"]) if meeting else None, target)
        if ref is not None:
            ref["kind"] = KIND[family]
            ref["verdict"] = _verdict(_line(best, target), ref) if best else "our codecs do not reach the floor"
            refs.append(ref)
    if best is None:
        why = (f"no compressor reaches token cosine {min_cosine:g}"
               + (f" within {budget_ms:g} ms decode (bound)" if budget_ms is not None else ""))
    else:
        why = f"smallest payload with token cosine >= {min_cosine:g}" + (
            f" and decode bound <= {budget_ms:g} ms" if budget_ms is not None else "")
    return {"target": target, "min_cosine": min_cosine, "decode_budget_ms": budget_ms, "choice": _line(best, target),
            "why": why, "references": refs}


def payload_decision(points: list[dict], targets: list[str], rule: dict | None) -> dict | None:
    """{"min_cosine", "decode_budget_ms", "targets": [choose(...) per target]}; None without compressor points."""
    if not any(is_codec(p) for p in points):
        return None
    rule = rule or {}
    # targets of the build, else every target the costs carry a bound for (a run without engines)
    targets = list(targets) or list(dict.fromkeys(t for p in points for t in bound_targets(p)))
    min_cosine = rule.get("min_cosine") or 0.99
    budget = rule.get("decode_budget_ms")
    return {"min_cosine": min_cosine, "decode_budget_ms": budget,
            "targets": [choose(points, t, min_cosine, budget) for t in targets]}
