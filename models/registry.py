"""Architecture registry: name -> nn.Module class built from a plain JSON-able config dict."""

from typing import Callable

import torch.nn as nn

ARCHS: dict[str, type[nn.Module]] = {}


def register(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make `name` loadable from checkpoints. The class takes its config as keyword args
    and keeps it in `self.config` (a dict of JSON-able values)."""

    def deco(cls):
        cls.arch = name
        ARCHS[name] = cls
        return cls

    return deco


def build(arch: str, config: dict) -> nn.Module:
    from ..util.errors import NtcError

    if arch not in ARCHS:
        raise NtcError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHS))}")
    try:
        return ARCHS[arch](**config)
    except TypeError as e:
        raise NtcError(f"bad config for architecture {arch!r}: {e}") from None
