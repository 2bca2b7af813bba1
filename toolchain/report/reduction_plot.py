"""Chart of the token-reduction table: token ratio on x, saliency r and probe accuracy on y."""

from .plots import _figure, _render


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
        for family in sorted({r["family"] for r in rows}):
            mine = sorted((r for r in rows if r["family"] == family), key=lambda r: r["ratio"])
            baseline = "baseline" in family  # the lines every method is read against
            ax.plot([r["ratio"] for r in mine], [r.get(key) if r.get(key) is not None else float("nan")
                                                 for r in mine],
                    marker="o", ls="--" if baseline else "-", label=family)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("token ratio (N_in / N_out)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("Token-count reducers and projectors on held-out data")
    return _render(plt, fig)
