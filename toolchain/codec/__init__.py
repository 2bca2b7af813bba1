"""BC-block (BC1/BC4/BC5/BC6H/BC7) codec: host decoders (C++), encoders, DDS files."""

from .formats import BLOCK_BYTES, FORMATS, TABLE, BcFormat  # noqa: F401  (the formats table)


def __getattr__(name):
    # Lazy: decoders build the host library on first use; encoders and DDS import only when asked for.
    if name == "decode":
        from .decode import decode as fn
    elif name == "encode":
        from .encode import encode as fn
    elif name in ("write_dds", "read_dds"):
        from . import dds

        fn = getattr(dds, name)
    else:
        raise AttributeError(name)
    globals()[name] = fn  # importing the submodule bound its module here; the function must win
    return fn
