"""Compressed-token payloads: one self-describing byte string per image, and a file holding many.

Payload (little-endian): magic `NTCP`, format version (u8), family name (u8 length + ASCII), model fingerprint
(8 bytes: which trained model can decode it), token grid h, w (u16 each), body length (u32), body. Bytes per image
are `len(payload)`, header included. Payload file: magic `NTCF`, version (u8), count (u32), then each payload as
length (u32) + bytes.

Decoded tokens (`ntc-export decompress`) go to an .npz: `patch_tokens` [N, h*w, D] float32 and `grid` [h, w] when
every payload has one grid; images on several grids as a ragged file laid out like a ragged token file without its
CLS row (payloads carry none): `packed_patch_tokens` [sum h*w, D], `grids` [N, 2], `offsets` [N+1].
"""

import struct
from dataclasses import dataclass

import numpy as np

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


def payload_length(row: bytes) -> int | None:
    """Bytes of the payload at the start of `row` as its header states them (a payload in a longer buffer, e.g. a
    zero-padded tensor row); None when there is no whole header."""
    if len(row) < _HEAD.size or row[:len(MAGIC)] != MAGIC:
        return None
    start = _HEAD.size + _HEAD.unpack_from(row)[2]
    return start + _TAIL.size + _TAIL.unpack_from(row, start)[3] if len(row) >= start + _TAIL.size else None


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


# ---- decoded token files -------------------------------------------------------------------------------------------


def grid_groups(payloads) -> list[tuple[np.ndarray, list[bytes]]]:
    """(indices, payloads) per token grid recorded in the payloads, in order of first image (each grid decodes on its
    own); a one-line NtcError for a payload that is not one."""
    grids = [unpack(p, f"payload {i}").grid for i, p in enumerate(payloads)]
    return [(np.array([i for i, g in enumerate(grids) if g == grid]), [p for p, g in zip(payloads, grids) if g == grid])
            for grid in dict.fromkeys(grids)]


def write_decoded(path, groups, count: int) -> dict:
    """Write decoded tokens [(indices, tokens [n, h, w, D])] of `count` images (see the module docstring); the
    arrays written."""
    from ..util.atomic import atomic_path

    if len(groups) == 1:
        tokens = groups[0][1]
        arrays = {"patch_tokens": tokens.reshape(len(tokens), -1, tokens.shape[-1]),
                  "grid": np.array(tokens.shape[1:3], np.int64)}
    else:
        rows = [None] * count
        for idx, tokens in groups:
            for i, t in zip(idx, tokens):
                rows[i] = t
        grids = np.array([r.shape[:2] for r in rows], np.int64)
        arrays = {"packed_patch_tokens": np.concatenate([r.reshape(-1, r.shape[-1]) for r in rows]), "grids": grids,
                  "offsets": np.concatenate([[0], np.cumsum(grids[:, 0] * grids[:, 1])]).astype(np.int64)}
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:  # a file object: numpy adds no 2nd .npz
        np.savez(f, **arrays)
    return arrays


def is_decoded_file(path) -> bool:
    """Whether `path` holds decoded tokens written by `write_decoded` (not a token set)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
    except Exception:  # missing or not an .npz: the token-file reader names the problem
        return False
    return not names & {"tokens", "packed_tokens"} and bool(names & {"patch_tokens", "packed_patch_tokens"})


def read_decoded(path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(indices, float32 tokens [n, h, w, D]) per grid of a decoded-token file, in order of first image; a file of
    bare `patch_tokens` without `grid` (older ones) is on a square grid."""
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    if "patch_tokens" in data:
        tokens = np.asarray(data["patch_tokens"], np.float32)
        if tokens.ndim != 3 or not np.isfinite(tokens).all():
            raise NtcError(f"{path}: patch_tokens must be finite [N, h*w, D], got shape {list(tokens.shape)}")
        side = int(round(tokens.shape[1] ** 0.5))
        h, w = (int(v) for v in data["grid"]) if "grid" in data else (side, side)
        if h * w != tokens.shape[1]:
            raise NtcError(f"{path}: {tokens.shape[1]} patch tokens per image do not form a {h}x{w} grid")
        return [(np.arange(len(tokens)), tokens.reshape(len(tokens), h, w, tokens.shape[2]))]
    grids, offsets, packed = data.get("grids"), data.get("offsets"), data["packed_patch_tokens"]
    want = None if grids is None or grids.ndim != 2 else np.concatenate([[0], np.cumsum(grids[:, 0] * grids[:, 1])])
    if want is None or offsets is None or not np.array_equal(offsets, want) or packed.ndim != 2 \
            or len(packed) != want[-1] or not np.isfinite(packed).all():
        raise NtcError(f"{path}: not a consistent ragged decoded-token file (grids, offsets, packed_patch_tokens)")
    out = []
    for grid in dict.fromkeys(map(tuple, grids.tolist())):
        idx = np.flatnonzero((grids == grid).all(1))
        out.append((idx, np.stack([packed[offsets[i]:offsets[i + 1]].reshape(*grid, -1) for i in idx])
                    .astype(np.float32)))
    return out
