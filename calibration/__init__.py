"""Calibration for INT8/FP8: activation statistics, calibrators, Q/DQ insertion, caches."""
