"""TensorRT: the targets table, backend set-up, optimization profiles, the engine manifest, ahead-of-time
TensorRT-RTX builds, Jetson deploy bundles and the TrtRunner."""
