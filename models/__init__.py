"""PyTorch modules: VLM projectors, token compressors, attention blocks, and the checkpoint format."""

from . import (
    bc_autoencoder,  # noqa: F401  (registers the BC-texture token compressor)
    hf_projectors,  # noqa: F401  (registers projectors found only in Hugging Face VLMs)
    hyperprior,  # noqa: F401  (registers the entropy-coded hyperprior token compressor)
    ntc_grid,  # noqa: F401  (registers the NTC-style latent-grid token compressor, int4 or BC-stored)
    ovis_vet,  # noqa: F401  (registers Ovis's visual tokenizer head + embedding table)
    projectors,  # noqa: F401  (registers the projector family)
    tome,  # noqa: F401  (registers ToMe token merging)
    visionzip,  # noqa: F401  (registers VisionZip token selection)
    vq,  # noqa: F401  (registers the codebook (product/residual VQ) token compressor)
)
from .checkpoint import FORMAT, load, read_arch, read_meta, save
from .registry import ARCHS, build, register

__all__ = ["ARCHS", "FORMAT", "build", "load", "read_arch", "read_meta", "register", "save"]
