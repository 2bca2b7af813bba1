"""Accuracy-vs-latency validation report: per-layer drift, latency, engines, Pareto plot, HTML/Markdown/JSON."""

from .drift import drift_threshold, layer_drift
from .latency import engine_latency, measure_latency, no_faster_than_fp16
from .measure import load_build, measure_build
from .polygraphy_io import load_polygraphy_results, save_polygraphy_results
from .writer import write_report

__all__ = ["drift_threshold", "engine_latency", "layer_drift", "load_build", "load_polygraphy_results",
           "measure_build", "measure_latency", "no_faster_than_fp16", "save_polygraphy_results", "write_report"]
