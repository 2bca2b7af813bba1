"""Serving: a Triton Inference Server model repository from a build directory (TensorRT plans per compute
capability, CPU twins on the Python backend, payload -> tokens -> projector ensembles) and a tritonserver launcher."""
