"""Runtimes: one folder per backend (torch, onnx, onnxrt, trt) with its export, loaders and runners."""
