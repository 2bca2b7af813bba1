"""Compressed-token payloads: one self-describing byte string per image, and a file holding many.

Payload (little-endian): magic `NTCP`, format version (u8), family name (u8 length + ASCII), model fingerprint
(8 bytes: which trained model can decode it), token grid h, w (u16 each), body length (u32), body. Bytes per image
are `len(payload)`, header included. Payload file: magic `NTCF`, version (u8), count (u32), then each payload as
length (u32) + bytes.
"""

import struct
from dataclasses import dataclass

from ..util.errors import NtcError

MAGIC = b"NTCP"
FILE_MAGIC = b"NTCF"
VERSION = 1
_HEAD = struct.Struct("<4sBB")  # magic, version, family length
_TAIL = struct.Struct("<8sHHI")  # fingerprint, h, w, body length
_FILE_HEAD = struct.Struct("<4sBI")  # magic, version, count
_LEN = struct.Struct("<I")


@dataclass(frozen=True)
class Payload:
    family: str
    fingerprint: bytes  # 8 bytes naming the model that wrote it
    grid: tuple[int, int]
    body: bytes

    def pack(self) -> bytes:
        name = self.family.encode("ascii")
        if len(name) > 255 or len(self.fingerprint) != 8:
            raise NtcError(f"payload family {self.family!r} or fingerprint {self.fingerprint!r} cannot be packed")
        h, w = self.grid
        return _HEAD.pack(MAGIC, VERSION, len(name)) + name + _TAIL.pack(self.fingerprint, h, w, len(self.body)) \
            + self.body


def square_side(tokens, what: str, dim: int | None = None) -> int:
    """The side of the square token grid of patch tokens [N, h*w, D] (a payload's grid); NtcError otherwise."""
    side = int(round(tokens.shape[1] ** 0.5)) if tokens.ndim == 3 else 0
    if tokens.ndim != 3 or side * side != tokens.shape[1] or (dim is not None and tokens.shape[2] != dim):
        raise NtcError(f"{what}: expected patch tokens [N, h*w, {dim or 'D'}] on a square grid, got "
                       f"{list(tokens.shape)}")
    return side


def unpack(data: bytes, what: str = "payload") -> Payload:
    """The payload in `data`; a one-line NtcError when it is not one, is truncated or has trailing bytes."""
    data = bytes(data)
    if len(data) < _HEAD.size or data[:4] != MAGIC:
        raise NtcError(f"{what}: not an ntc-export compressed-token payload (no {MAGIC.decode()} header)")
    _, version, n = _HEAD.unpack_from(data)
    if version != VERSION:
        raise NtcError(f"{what}: payload format version {version} is not supported (this is version {VERSION})")
    start = _HEAD.size + n
    if len(data) < start + _TAIL.size:
        raise NtcError(f"{what}: truncated payload header ({len(data)} bytes)")
    fingerprint, h, w, size = _TAIL.unpack_from(data, start)
    body = data[start + _TAIL.size:]
    if len(body) != size:
        raise NtcError(f"{what}: payload body is {len(body)} bytes, its header says {size} (truncated or padded)")
    return Payload(data[_HEAD.size:start].decode("ascii", "replace"), fingerprint, (h, w), body)


def expect(payload: Payload, family: str, fingerprint: bytes, what: str = "payload") -> Payload:
    """The payload, when it was written by this family and model; a one-line NtcError naming the writer otherwise."""
    if payload.family != family:
        raise NtcError(f"{what}: written by a {payload.family!r} compressor, not {family!r}")
    if payload.fingerprint != fingerprint:
        raise NtcError(f"{what}: written by another {family} model (fingerprint {payload.fingerprint.hex()}, this "
                       f"model is {fingerprint.hex()})")
    return payload


def expect_all(payloads, family: str, fingerprint: bytes) -> list[Payload]:
    """Every payload parsed and checked as `expect` does, all on one token grid; a one-line NtcError otherwise."""
    parsed = [expect(unpack(p, f"payload {i}"), family, fingerprint, f"payload {i}") for i, p in enumerate(payloads)]
    if not parsed:
        raise NtcError("no payloads to decode")
    if len({p.grid for p in parsed}) != 1:
        raise NtcError(f"payloads hold different token grids {sorted({p.grid for p in parsed})}: decode each grid on "
                       "its own")
    return parsed


def pack_file(payloads: list[bytes]) -> bytes:
    """One file's bytes holding every payload in order."""
    parts = [_FILE_HEAD.pack(FILE_MAGIC, VERSION, len(payloads))]
    for p in payloads:
        parts += [_LEN.pack(len(p)), bytes(p)]
    return b"".join(parts)


def unpack_file(data: bytes, what: str = "payload file") -> list[bytes]:
    """The payloads of a file written by `pack_file`; a one-line NtcError when it is not one or is cut short."""
    if len(data) < _FILE_HEAD.size or data[:4] != FILE_MAGIC:
        raise NtcError(f"{what}: not an ntc-export payload file (no {FILE_MAGIC.decode()} header)")
    _, version, count = _FILE_HEAD.unpack_from(data)
    if version != VERSION:
        raise NtcError(f"{what}: payload file version {version} is not supported (this is version {VERSION})")
    out, pos = [], _FILE_HEAD.size
    for i in range(count):
        if pos + _LEN.size > len(data):
            raise NtcError(f"{what}: truncated after {i} of {count} payloads")
        (n,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        if pos + n > len(data):
            raise NtcError(f"{what}: truncated inside payload {i} of {count}")
        out.append(data[pos:pos + n])
        pos += n
    if pos != len(data):
        raise NtcError(f"{what}: {len(data) - pos} bytes after the last of {count} payloads")
    return out
