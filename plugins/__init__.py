"""C++/CUDA plugin sources (headers, kernels, TensorRT adapters, CMake), shipped as package data."""
