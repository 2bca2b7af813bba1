"""ONNX Runtime: the OrtRunner (CPU; CUDA EP where present)."""
