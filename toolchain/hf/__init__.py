"""Hugging Face VLM checkpoints (config.json + *.safetensors): their projector weights as our registered models."""

from .convert import Converted, convert, is_hf_folder, main_job_checkpoints, write
from .families import FAMILIES, family_for
from .patch_order import merge_order

__all__ = ["FAMILIES", "Converted", "convert", "family_for", "is_hf_folder", "main_job_checkpoints", "merge_order",
           "write"]
