"""ntc::BcDecode v1 contract: the op name, its fields and their C ABI codes (spec: plugins/specs/BcDecode.md).

Input: blocks INT32 [B, by, bx, W] (W = the format's INT32 words). Output: nchw [B, C, 4by, 4bx] or tokens
[B, 16*by*bx, C] in float32 or float16 (C = the format's channels; see ntc_export.codec.formats).
"""

from ...codec.formats import FORMATS
from ...util.errors import NtcError

OP = "BcDecode"
FIELDS = ("format", "layout", "dtype")  # all strings; C ABI codes below
LAYOUT_CODES = {"nchw": 0, "tokens": 1}
DTYPE_CODES = {"float32": 0, "float16": 1}
LAYOUTS = tuple(LAYOUT_CODES)
DTYPES = tuple(DTYPE_CODES)


def check_fields(fields: dict, where: str = OP) -> None:
    """NtcError unless format, layout and dtype are known values."""
    for key, allowed in (("format", FORMATS), ("layout", LAYOUTS), ("dtype", DTYPES)):
        if fields.get(key) not in allowed:
            raise NtcError(f"{where}: {key}={fields.get(key)!r}; choose from {', '.join(allowed)}")
