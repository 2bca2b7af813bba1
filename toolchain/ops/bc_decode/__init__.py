"""ntc::BcDecode v1: contract, PyTorch op, ONNX Runtime op, decomposition into standard ops, Python TensorRT plugin."""
