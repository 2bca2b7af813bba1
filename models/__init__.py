"""PyTorch modules: VLM projectors, token compressors, attention blocks, and the checkpoint format."""

from . import (
    bc_autoencoder,  # noqa: F401  (registers the BC-texture token compressor)
    projectors,  # noqa: F401  (registers the projector family)
)
from .checkpoint import FORMAT, load, save
from .registry import ARCHS, build, register

__all__ = ["ARCHS", "FORMAT", "build", "load", "register", "save"]
