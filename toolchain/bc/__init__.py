"""BC-block (BC1/BC4/BC5/BC6H/BC7) codec: host decoders (C++), encoders, DDS files."""

FORMATS = ("bc1", "bc4", "bc5", "bc6h_uf16", "bc6h_sf16", "bc7")
BLOCK_BYTES = {"bc1": 8, "bc4": 8, "bc5": 16, "bc6h_uf16": 16, "bc6h_sf16": 16, "bc7": 16}


def __getattr__(name):
    # Lazy: decoders build the host library on first use; encoders and DDS import only when asked for.
    if name == "decode":
        from .decode import decode
        return decode
    if name == "encode":
        from .encode import encode
        return encode
    if name in ("write_dds", "read_dds"):
        from . import dds
        return getattr(dds, name)
    raise AttributeError(name)
