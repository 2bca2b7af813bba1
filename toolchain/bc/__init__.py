"""BC-block (BC1/BC4/BC5/BC6H/BC7) codec: host decoders (C++), encoders, DDS files."""

FORMATS = ("bc1", "bc4", "bc5", "bc6h_uf16", "bc6h_sf16", "bc7")
BLOCK_BYTES = {"bc1": 8, "bc4": 8, "bc5": 16, "bc6h_uf16": 16, "bc6h_sf16": 16, "bc7": 16}


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
