"""Matplotlib figures for the report: the trade-off chart (worst-output SNR against engine bytes and against measured
latency), the accuracy-vs-latency Pareto plot and the compressors' rate-distortion plot.

Each figure comes back as PNG bytes (embedded base64 in the HTML) and SVG text (written beside it).
"""

import io
import math

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


REFERENCE_STYLE = {"pca": (":", "0.45"), "quant": ("", "0.2"), "pixels": ("--", None)}  # family -> (line, colour)


def _reference(p: dict) -> str | None:
    """The reference family a point belongs to (PCA line, token quantization, picture codec + ViT), else None."""
    family = p.get("family") or ""
    series = str(p.get("series", p["model"]))
    return family if family in REFERENCE_STYLE else ("pca" if series.startswith("pca") else None)


def _rd_series(ax, points: list[dict], x_key: str, label_suffix: str = "") -> None:
    """One line per series (a learned family, a picture codec, the PCA line); quantization rows as lone markers."""
    for series in sorted({p.get("series", p["model"]) for p in points}):
        mine = sorted((p for p in points if p.get("series", p["model"]) == series), key=lambda p: p[x_key])
        ref = _reference(mine[0])
        ls, colour = REFERENCE_STYLE.get(ref, ("-", None))
        ax.plot([p[x_key] for p in mine], [p["cosine"] for p in mine], marker="x" if ref == "quant" else "o",
                ls=ls or "none", color=colour, ms=4 if ref else 5, lw=1.0 if ref else 1.6,
                label=f"{series}{label_suffix}")
        if ref == "quant":
            for p in mine:
                ax.annotate(p.get("arch") or p["model"], (p[x_key], p["cosine"]), textcoords="offset points",
                            xytext=(3, -8), fontsize=6, color="0.25")


def rate_distortion_plot(points: list[dict]) -> tuple[bytes, str] | None:
    """Token cosine against bytes per image (left; probe accuracy dashed where present) and against decode FLOPs per
    image (right, where the points carry a decode cost): learned families solid, the PCA line dotted, pictures coded
    and re-encoded by the ViT dashed, token quantization as crosses. None without points."""
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    costed = [p for p in points if (p.get("decode_flops") or 0) > 0]
    fig = plt.figure(figsize=(11.0 if costed else 7.5, 4.8), dpi=100)
    ax = fig.add_subplot(1, 2 if costed else 1, 1)
    _rd_series(ax, points, "bytes_per_image")
    with_task = [p for p in points if p.get("task_metric") is not None]
    if with_task:
        ax2 = ax.twinx()
        for series in sorted({p.get("series", p["model"]) for p in with_task}):
            mine = sorted((p for p in with_task if p.get("series", p["model"]) == series),
                          key=lambda p: p["bytes_per_image"])
            ax2.plot([p["bytes_per_image"] for p in mine], [p["task_metric"] for p in mine], marker="^", ls="--",
                     lw=0.8, label=f"{series} probe")
        ax2.set_ylabel("probe accuracy")
        ax2.legend(fontsize=6.5, loc="lower center")
    ax.set_xscale("log")
    ax.set_xlabel("bytes per image (payload, or coded picture)")
    ax.set_ylabel("token cosine vs the original tokens")
    ax.set_title("Bytes vs token fidelity", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5, loc="lower right", ncol=2)
    if costed:
        bx = fig.add_subplot(1, 2, 2, sharey=ax)
        _rd_series(bx, costed, "decode_flops")
        bx.set_xscale("log")
        bx.set_xlabel("decode FLOPs per image (counted by onnx-tool; pictures: the ViT)")
        bx.set_title("Decode cost vs token fidelity", fontsize=10)
        bx.grid(True, which="both", alpha=0.3)
    fig.suptitle("Rate-distortion of the token compressors beside the routes a user could take instead", fontsize=10)
    return _render(plt, fig)


# Plotted SNR ceiling: fp32 graphs match PyTorch to ~100+ dB (or exactly: inf), far above any decision.
SNR_CEILING_DB = 80.0


def threshold_snr_db(threshold: str) -> float | None:
    """The SNR a validation threshold ("cosine >= 0.999", "rel_l2 <= 1e-05") stands for: rel L2 r is exactly
    -20 log10 r; cosine c is -10 log10(1 - c^2), the SNR of the best-scaled output at that angle, so a point
    above the line always meets the cosine threshold."""
    metric, _, bound = threshold.partition(" ")
    value = float(bound.split()[-1]) if bound else None
    if metric == "rel_l2" and value and value > 0:
        return -20.0 * math.log10(value)
    if metric == "cosine" and value is not None and value < 1:
        return -10.0 * math.log10(1.0 - value * value)
    return None


def _snr(value) -> float:
    return SNR_CEILING_DB if value is None or value > SNR_CEILING_DB else value


def _panel(ax, points, x_key, colours, models):
    scale = 2.0 ** -20 if x_key == "engine_bytes" else 1.0  # engine sizes read in MiB, on a linear axis
    for p in points:
        colour = colours[models.index(p["model"]) % len(colours)]
        hollow = p.get("meets_thresholds") is False  # below its precision's threshold: drawn hollow
        ax.scatter(p[x_key] * scale, _snr(p["worst_snr_db"]), marker=MARKERS.get(p["precision"], "o"), s=40,
                   zorder=3, facecolors="none" if hollow else colour, edgecolors=colour, linewidths=1.3)
    if x_key != "engine_bytes":
        ax.set_xscale("log")  # latencies span orders of magnitude across models
    ax.grid(True, which="major", alpha=0.3)


def _threshold_lines(ax, thresholds: dict[str, str], precisions: set) -> None:
    for precision, text in sorted(thresholds.items()):
        level = threshold_snr_db(text) if precision in precisions else None
        if level is not None and level < SNR_CEILING_DB:
            ax.axhline(level, color="0.35", ls="--", lw=0.8, zorder=1)
            ax.annotate(f"{precision}: {text}", (0.01, level), xycoords=("axes fraction", "data"),
                        textcoords="offset points", xytext=(0, 1.5), fontsize=5.5, color="0.25")


def tradeoff_plot(size_points: list[dict], latency_points: list[dict], thresholds: dict[str, str],
                  size_target: str | None) -> tuple[bytes, str] | None:
    """Worst-output SNR (dB) against engine bytes (left) and against measured p50 latency (right): one marker per
    precision, one colour per model, hollow markers below their threshold, thresholds as dashed lines."""
    if not size_points and not latency_points:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig = plt.figure(figsize=(6.4, 3.6), dpi=100)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    models = sorted({p["model"] for p in size_points} | {p["model"] for p in latency_points})
    where = sorted({p["where"] for p in latency_points})
    panels = [(size_points, "engine_bytes", f"engine size, MiB ({size_target})"),
              (latency_points, "latency_ms", "p50 ms, batch {} ({})".format(
                  latency_points[0]["batch"] if latency_points else 1, ", ".join(where) or "none measured"))]
    axes = []
    for i, (points, key, label) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1, sharey=axes[0] if axes else None)
        axes.append(ax)
        if points:
            _panel(ax, points, key, colours, models)
            _threshold_lines(ax, thresholds, {p["precision"] for p in points})
        else:
            ax.text(0.5, 0.5, "nothing measured", ha="center", va="center", transform=ax.transAxes, color="0.4")
        ax.set_xlabel(label, fontsize=7.5)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel(f"worst-output SNR, dB (≥{SNR_CEILING_DB:.0f} at the top)", fontsize=7.5)
    order = list(MARKERS)
    shown = sorted({p["precision"] for p in size_points + latency_points},
                   key=lambda p: (order.index(p) if p in order else len(order), p))
    handles = [Line2D([], [], ls="", marker=MARKERS.get(p, "o"), color="0.2", label=p) for p in shown]
    handles += [Line2D([], [], ls="", marker="o", color=colours[i % len(colours)], label=m)
                for i, m in enumerate(models)]
    fig.legend(handles=handles, loc="center right", fontsize=6.5, frameon=False, handletextpad=0.2)
    fig.suptitle("SNR vs engine size and measured latency (hollow: below threshold; dashed: threshold)",
                 fontsize=8.5)
    fig.tight_layout(rect=(0, 0, 0.83, 1), pad=0.6, w_pad=0.4)
    png, svg = io.BytesIO(), io.StringIO()
    fig.savefig(png, format="png", metadata={"Software": None})
    fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return png.getvalue(), svg.getvalue()
