"""onnxrt."""
