"""ONNX: export from PyTorch (fp32, strongly typed fp16) and reading ONNX files without running them."""
