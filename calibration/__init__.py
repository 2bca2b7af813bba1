"""Calibration for INT8/FP8 (activation statistics, calibrators, Q/DQ insertion, caches) and weight-only INT4 (AWQ) /
NVFP4 graphs (weight_only.py)."""

from .api import CalibrationResult, calibrate
from .calibrators import METHODS
from .formats import PRECISIONS

__all__ = ["CalibrationResult", "METHODS", "PRECISIONS", "calibrate"]
