"""Which compressor families `ntc-export train` can fit, and where each family's recipe lives.

A recipe is the module `ntc_export.train.<arch>`; it provides
    config_for_rate(rate, input_dim=384, **overrides) -> dict   the arch's config for `rate`x fewer bytes than fp16
    init(module, tokens, seed) -> None                          the data-driven start (PCA of cells, k-means, ...)
    ZOO_PREFIX: str                                             zoo checkpoints are <ZOO_PREFIX>_x<rate>.pt
and optionally
    summary(module, tokens) -> dict                             the family's report on its training tokens
"""

import importlib
from types import ModuleType

from ..util.errors import NtcError

TRAINABLE = ("bc_autoencoder", "vq", "hyperprior", "ntc_grid")


def recipe(arch: str) -> ModuleType:
    """The training recipe of `arch`; a one-line NtcError for an arch that is not trainable."""
    if arch not in TRAINABLE:
        raise NtcError(f"train supports {', '.join(TRAINABLE)}; got {arch!r}")
    return importlib.import_module(f"{__package__}.{arch}")
