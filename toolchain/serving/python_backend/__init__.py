"""Models for Triton's Python backend: each file here is copied into a repository as `<version>/model.py` and runs in
the backend's stub process (where `triton_python_backend_utils` exists), importing ntc_export from the server's
Python environment."""
