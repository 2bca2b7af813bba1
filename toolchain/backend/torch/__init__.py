"""PyTorch: the golden runner."""
