"""Tensors between Triton's Python backend and NumPy through DLPack.

The stub of tritonserver 2.51 (nvidia-pytriton 0.7.0) reads NumPy arrays through a pybind11 that predates NumPy 2's
dtype layout: with NumPy 2 `as_numpy()` gets zero strides and `pb_utils.Tensor(name, array)` a wrong size. DLPack
carries pointer, shape and strides explicitly, so it is right under NumPy 1 and 2 alike.
"""

import ctypes

import numpy as np

_capsule_is_valid = ctypes.pythonapi.PyCapsule_IsValid
_capsule_is_valid.argtypes, _capsule_is_valid.restype = [ctypes.py_object, ctypes.c_char_p], ctypes.c_int
_capsule_set_name = ctypes.pythonapi.PyCapsule_SetName
_capsule_set_name.argtypes, _capsule_set_name.restype = [ctypes.py_object, ctypes.c_char_p], ctypes.c_int
_LIVE, _USED = b"dltensor", b"used_dltensor"  # module constants: a capsule keeps a pointer to its name


class _Producer:
    """The DLPack producer protocol over a pb_utils.Tensor in host memory (what np.from_dlpack asks for)."""

    def __init__(self, tensor):
        self.tensor = tensor

    def __dlpack__(self, **_):
        return self.tensor.to_dlpack()

    def __dlpack_device__(self):
        return (1, 0)  # kDLCPU, device 0: Python-backend inputs on CPU instances live in host memory


def to_numpy(tensor) -> np.ndarray:
    """A request's input tensor as a NumPy array (shares the request's buffer)."""
    return np.from_dlpack(_Producer(tensor))


def from_numpy(pb_utils, name: str, array: np.ndarray):
    """A response tensor holding `array` (the stub takes ownership of the DLPack capsule)."""
    array = np.require(array, requirements=["C", "W"])  # NumPy exports writeable arrays only
    capsule = array.__dlpack__()
    tensor = pb_utils.Tensor.from_dlpack(name, capsule)
    # The stub renames a consumed capsule "used_dlpack"; NumPy's destructor only skips "used_dltensor".
    if not _capsule_is_valid(capsule, _LIVE):
        _capsule_set_name(capsule, _USED)
    return tensor
