"""Measuring artifacts against PyTorch: fidelity, validation, latency, per-layer drift, provenance of a build."""

from .drift import drift_threshold, layer_drift
from .latency import engine_latency, measure_latency
from .measure import load_build, measure_build
from .polygraphy_io import load_polygraphy_results, save_polygraphy_results

__all__ = ["drift_threshold", "engine_latency", "layer_drift", "load_build", "load_polygraphy_results",
           "measure_build", "measure_latency", "save_polygraphy_results"]
