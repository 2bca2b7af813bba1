"""Native libraries: the host (CPU) C++ library built with g++, and the CUDA kernels library, loaded with ctypes."""
