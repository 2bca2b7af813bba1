"""Reading measured latencies: batch keys, and whether a narrower precision beats fp16."""

# A narrower precision must beat fp16 by this fraction to count as faster (the shared CPU machines are noisy).
FASTER_MARGIN = 0.05
NARROW_PRECISIONS = ("int8", "fp8", "int4", "fp4", "nvfp4")


def is_batch_key(key) -> bool:
    """Latency results key their percentiles "b1", "b8", ... beside "backend", "device", ..."""
    return isinstance(key, str) and key[:1] == "b" and key[1:].isdigit()


def no_faster_than_fp16(latency: dict[str, dict]) -> dict[str, dict]:
    """For each narrower-than-fp16 precision of one model ({precision: measure_latency result}): whether it fails
    to beat fp16 by FASTER_MARGIN at every batch size measured for both, with the ratios."""
    base = latency.get("fp16")
    flags = {}
    if not base or not base.get("executed", True):
        return flags
    for precision, lat in latency.items():
        if precision not in NARROW_PRECISIONS or not lat.get("executed", True):
            continue
        ratios = {k: lat[k]["p50_ms"] / base[k]["p50_ms"] for k in lat
                  if is_batch_key(k) and k in base and base[k]["p50_ms"] > 0}
        if ratios:
            flags[precision] = {"flag": all(r >= 1.0 - FASTER_MARGIN for r in ratios.values()),
                                "p50_ratio_vs_fp16": ratios}
    return flags
