"""Calibration for INT8/FP8: activation statistics, calibrators, Q/DQ insertion, caches."""

from .api import CalibrationResult, calibrate
from .calibrators import METHODS
from .formats import PRECISIONS

__all__ = ["CalibrationResult", "METHODS", "PRECISIONS", "calibrate"]
