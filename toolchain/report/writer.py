"""write_report: OUT/report/{index.html, report.md, report.json} plus the plots as PNG and SVG files, and the same
Markdown as OUT/report.md (its plot links pointing into report/), so the build has one report in two places."""

import json
from pathlib import Path

from ..util.atomic import write_bytes, write_json, write_text
from . import html, markdown, plots
from .collect import build_view
from .schema import validate
from .token_reduction import token_reduction_plot


def write_report(out_dir, report: dict) -> dict[str, Path]:
    """Render every report file for the main job's report dict (see collect.py for the optional keys)."""
    out_dir = Path(out_dir)
    dest = out_dir / "report"
    view = build_view(out_dir, report)
    trade = view["tradeoff"]
    images = {"tradeoff": plots.tradeoff_plot(trade["size"], trade["latency"], view["decision"]["thresholds"],
                                              trade["size_target"]),
              "pareto": plots.pareto_plot(view["pareto"]),
              "rate_distortion": plots.rate_distortion_plot(view["rate_distortion"]),
              "token_reduction": token_reduction_plot(view["token_reduction"]["rows"]) if view["token_reduction"]
              else None}
    written, image_files = {}, {}
    for name, figure in images.items():
        if figure is None:
            continue
        png, svg = figure
        stem = name.replace("_", "-")
        write_bytes(dest / f"{stem}.png", png)
        write_text(dest / f"{stem}.svg", svg)
        written[f"{name}_png"], written[f"{name}_svg"] = dest / f"{stem}.png", dest / f"{stem}.svg"
        image_files[name] = f"{stem}.png"
    view["plots"] = {name: image_files.get(name) for name in images}
    view = json.loads(json.dumps(view, default=str))
    validate(view)
    write_json(dest / "report.json", view)
    write_text(dest / "report.md", markdown.render(view, image_files))
    write_text(out_dir / "report.md", markdown.render(view, {k: f"report/{v}" for k, v in image_files.items()}))
    write_text(dest / "index.html", html.render(view, {k: (v[0] if v else None) for k, v in images.items()}))
    written.update(html=dest / "index.html", markdown=dest / "report.md", json=dest / "report.json",
                   top_markdown=out_dir / "report.md")
    return written
