"""ntc::WindowAttention v1 contract: the op name, inputs, fields and mask value (spec:
plugins/specs/WindowAttention.md).

Inputs: q, k, v [BW, heads, T, hd] (T = window^2), bias_table [(2*window-1)^2, heads], mask [nW, T, T] additive;
output [BW, T, heads*hd] in q's dtype.
"""

from ...util.errors import NtcError

OP = "WindowAttention"
INPUTS = ("q", "k", "v", "bias_table", "mask")
FIELDS = ("heads", "window", "shift", "scale")  # int32, int32, int32 (optional, default 0), float32
MASKED = -10000.0  # additive mask value for disallowed keys (finite: fp16-safe)


def check_fields(fields: dict, where: str = OP) -> None:
    """NtcError unless heads, window >= 1 and 0 <= shift < window, with a scale given."""
    missing = [f for f in FIELDS if f != "shift" and fields.get(f) is None]
    if missing:
        raise NtcError(f"{where}: missing field(s) {', '.join(missing)}")
    heads, window, shift = int(fields["heads"]), int(fields["window"]), int(fields.get("shift") or 0)
    if heads < 1 or window < 1:
        raise NtcError(f"{where}: heads and window must be >= 1 (got {heads}, {window})")
    if not 0 <= shift < window:
        raise NtcError(f"{where}: need 0 <= shift < window (got shift {shift}, window {window})")
