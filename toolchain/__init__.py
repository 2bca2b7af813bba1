"""ntc-export: ship visual-token compressors and VLM projectors as validated TensorRT engines."""

__version__ = "0.1.0"
