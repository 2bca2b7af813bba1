"""The token-reduction table (what `ntc-export rd` writes for reducers and projectors): its rows as cells, as
Markdown, and as a chart (token ratio on x, saliency r and probe accuracy on y)."""

import json
from pathlib import Path

from ..util.errors import NtcError
from .fmt import num
from .plots import _figure, _render

FILE = "token_reduction.json"  # in a build directory: the table its report shows
KEPT = ("data", "task", "samples", "task_samples", "rows")  # what the report keeps of `rd`'s JSON (no fit paths)

HEAD = ["method", "family", "token ratio", "tokens/image", "saliency r", "probe acc.", "rel. error", "readout"]
ROW_KEYS = ("model", "family", "ratio", "tokens_per_image")  # every row has these


def check(table, source: str) -> dict:
    """`table` (parsed JSON) if it is an `rd` token-reduction table, else a one-line NtcError naming `source`."""
    rows = table.get("rows") if isinstance(table, dict) else None
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) and all(k in r for k in ROW_KEYS)
                                                         for r in rows):
        raise NtcError(f"{source}: not a token-reduction table (write one with `ntc-export rd` on reducers or "
                       "projectors)")
    return table


def read(path: Path) -> dict:
    """A token-reduction table from `path` (checked), with only the KEPT keys."""
    try:
        table = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NtcError(f"{path}: cannot read a token-reduction table ({e})") from None
    return {k: v for k, v in check(table, str(path)).items() if k in KEPT}


def load(build_dir) -> dict | None:
    """The build directory's token-reduction table, or None without one."""
    path = Path(build_dir) / FILE
    return read(path) if path.is_file() else None


def cells(row: dict) -> list[str]:
    """One row's cells, in HEAD's order."""
    return [row["model"], row["family"], num(row["ratio"], ".2f"), num(row["tokens_per_image"], ".1f"),
            num(row.get("saliency_r"), ".4f"), num(row.get("probe_accuracy"), ".3f"), num(row.get("rel_error"), ".3f"),
            row.get("readout") or "—"]


def caption(table: dict) -> str:
    """Where the table's numbers come from, in one sentence."""
    return (f"`ntc-export rd` on {table.get('data', '?')} ({table.get('samples', '?')} held-out images: saliency r) "
            f"and {table.get('task', '?')} ({table.get('task_samples', '?')} images: probe accuracy); every output "
            "token scattered back to the grid positions it covers.")


def markdown_section(table: dict | None, image: str | None) -> list[str]:
    """The report's Markdown lines for the table (or why there is none)."""
    if not table:
        return ["No token-reduction table in this build directory (`ntc-export report BUILD_DIR --token-reduction "
                "RD.json` adds the one `ntc-export rd` wrote for reducers and projectors).", ""]
    return ([f"![token reduction]({image})", ""] if image else []) + [caption(table), "",
                                                                       markdown_table(table["rows"]), ""]


def markdown_table(rows: list[dict]) -> str:
    """The table as Markdown."""
    lines = ["| " + " | ".join(HEAD) + " |", "|---|---|" + "---:|" * 5 + "---|"]
    return "\n".join(lines + ["| " + " | ".join(cells(r)) + " |" for r in rows])


def token_reduction_plot(rows: list[dict]) -> tuple[bytes, str] | None:
    """Two panels (saliency r, probe accuracy) against token ratio, one series per family, baselines dashed."""
    rows = [r for r in rows if r["family"] != "original"]
    if not rows:
        return None
    plt, fig = _figure()
    panels = [("saliency_r", "saliency r (held-out)")]
    if any(r.get("probe_accuracy") is not None for r in rows):
        panels.append(("probe_accuracy", "probe accuracy (held-out task)"))
    for i, (key, label) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        colours = plt.get_cmap("tab20").colors  # one colour per family (the default cycle repeats after 10)
        for j, family in enumerate(sorted({r["family"] for r in rows})):
            mine = sorted((r for r in rows if r["family"] == family), key=lambda r: r["ratio"])
            baseline = "baseline" in family  # the lines every method is read against
            ax.plot([r["ratio"] for r in mine], [r.get(key) if r.get(key) is not None else float("nan")
                                                 for r in mine], marker="os^Dv"[j % 5], color=colours[j % 20],
                    ls="--" if baseline else "-", label=family)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("token ratio (N_in / N_out)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("Token-count reducers and projectors on held-out data")
    return _render(plt, fig)
