"""Number formatting shared by the HTML and Markdown renderers."""


def num(value, spec: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return format(value, spec)


def ms(lat: dict | None, batch: str, which: str) -> str:
    if not lat or batch not in lat:
        return "—"
    return num(lat[batch][which], ".3f")


def task(row: dict) -> str:
    if row.get("task_metric") is None:
        return "—"
    return f"{num(row['task_metric'], '.4f')} ({num(row.get('task_metric_golden'), '.4f')})"


def size(nbytes) -> str:
    if nbytes is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024


def mib(nbytes) -> str:
    """Engine sizes in MiB with two decimals: the engines of one model differ by a few percent."""
    return "—" if nbytes is None else f"{nbytes / 2**20:.2f} MiB"


def precisions(counts: dict | None) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) if counts else "—"


def batches(rows) -> list[str]:
    """Batch keys ("b1", "b8", ...) measured in any latency row, in numeric order."""
    from .latency_flags import is_batch_key

    keys = {k for r in rows for k in (r.get("latency") or r) if is_batch_key(k)}
    return sorted(keys, key=lambda k: int(k[1:]))
