"""Matplotlib figures for the report: accuracy-vs-latency Pareto plot and the compressors' rate-distortion plot.

Each figure comes back as PNG bytes (embedded base64 in the HTML) and SVG text (written beside it).
"""

import io

MARKERS = {"fp32": "o", "fp16": "s", "bf16": "D", "int8": "^", "fp8": "v", "int4": "P", "fp4": "X", "nvfp4": "X"}


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(7.5, 4.6), dpi=100)


def _render(plt, fig) -> tuple[bytes, str]:
    fig.tight_layout()
    png, svg = io.BytesIO(), io.StringIO()
    # No software/date metadata: identical inputs give identical files.
    fig.savefig(png, format="png", metadata={"Software": None})
    fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return png.getvalue(), svg.getvalue()


def _error(cosine: float) -> float:
    return max(1.0 - cosine, 1e-12)  # log axis: exact matches sit at the floor


def pareto_plot(points: list[dict]) -> tuple[bytes, str] | None:
    """1 - cosine (log) against p50 latency (log), one colour per model, frontier joined; None without points."""
    if not points:
        return None
    plt, fig = _figure()
    ax = fig.add_subplot(111)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, model in enumerate(sorted({p["model"] for p in points})):
        mine = [p for p in points if p["model"] == model]
        colour = colours[i % len(colours)]
        for p in mine:
            ax.scatter(p["latency_ms"], _error(p["cosine"]), color=colour, marker=MARKERS.get(p["precision"], "o"),
                       s=46, edgecolors="black" if p["pareto"] else "none", zorder=3)
            ax.annotate(f"{p['precision']} {p['where'].split()[-1]}", (p["latency_ms"], _error(p["cosine"])),
                        textcoords="offset points", xytext=(5, 4), fontsize=7)
        front = sorted((p for p in mine if p["pareto"]), key=lambda p: p["latency_ms"])
        ax.plot([p["latency_ms"] for p in front], [_error(p["cosine"]) for p in front], color=colour, lw=1.2,
                label=model, zorder=2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"p50 latency, ms (batch {points[0]['batch']}; measured devices in the latency table)")
    ax.set_ylabel("1 − cosine vs PyTorch (lower is better)")
    ax.set_title("Accuracy vs latency (frontier points outlined)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _render(plt, fig)


def rate_distortion_plot(points: list[dict]) -> tuple[bytes, str] | None:
    """Cosine (and probe accuracy where present) against bytes per image; None without compressor records."""
    if not points:
        return None
    plt, fig = _figure()
    ax = fig.add_subplot(111)
    with_task = any(p["task_metric"] is not None for p in points)
    ax2 = ax.twinx() if with_task else None
    for model in sorted({p.get("series", p["model"]) for p in points}):  # one line per compressor family
        mine = sorted((p for p in points if p.get("series", p["model"]) == model), key=lambda p: p["bytes_per_image"])
        x = [p["bytes_per_image"] for p in mine]
        reference = model.startswith("pca")  # the linear baseline every learned curve is read against
        line, = ax.plot(x, [p["cosine"] for p in mine], marker="o", label=f"{model} cosine",
                        ls=":" if reference else "-", color="0.45" if reference else None)
        if ax2 is not None:
            ax2.plot(x, [p["task_metric"] if p["task_metric"] is not None else float("nan") for p in mine],
                     marker="^", ls="--", color=line.get_color(), label=f"{model} probe accuracy")
    ax.set_xscale("log")
    ax.set_xlabel("bytes per image")
    ax.set_ylabel("token cosine vs the original tokens")
    if ax2 is not None:
        ax2.set_ylabel("probe accuracy")
        ax2.legend(fontsize=8, loc="lower center")
    ax.set_title("Rate-distortion of the token compressors")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _render(plt, fig)
