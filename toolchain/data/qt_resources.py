"""Read the files packed in a Qt resource file (`.rcc`, as GCompris ships its pictures): tree, names, data."""

import struct
import zlib

from ..util.errors import NtcError

_COMPRESSED = 0x01  # zlib, after a 4-byte uncompressed size
_DIRECTORY = 0x02
_ZSTD = 0x04


def rcc_files(data: bytes, where: str = "resource file") -> dict[str, bytes]:
    """Path -> bytes of every file in a Qt binary resource (format versions 1 to 3)."""
    if data[:4] != b"qres":
        raise NtcError(f"{where}: not a Qt resource file (no qres header)")
    version, tree, payload, names = struct.unpack_from(">IIII", data, 4)
    entry = 14 if version == 1 else 22  # version 2 added an 8-byte modification time

    def name(offset: int) -> str:
        (length,) = struct.unpack_from(">H", data, names + offset)
        start = names + offset + 6  # length, then a 4-byte hash, then UTF-16BE
        return data[start:start + 2 * length].decode("utf-16-be")

    files: dict[str, bytes] = {}

    def walk(index: int, prefix: str) -> None:
        base = tree + index * entry
        name_offset, flags = struct.unpack_from(">IH", data, base)
        path = prefix + name(name_offset) if index else ""
        if flags & _DIRECTORY:
            count, first = struct.unpack_from(">II", data, base + 6)
            for child in range(first, first + count):
                walk(child, f"{path}/" if index else "")
            return
        if flags & _ZSTD:
            return  # zstd-packed entries need a zstd decoder; none of the pictures we read use it
        (offset,) = struct.unpack_from(">I", data, base + 10)
        (size,) = struct.unpack_from(">I", data, payload + offset)
        blob = data[payload + offset + 4:payload + offset + 4 + size]
        files[path] = zlib.decompress(blob[4:]) if flags & _COMPRESSED else blob

    try:
        walk(0, "")
    except (struct.error, zlib.error, UnicodeDecodeError) as e:
        raise NtcError(f"{where}: corrupt Qt resource file ({e})") from None
    return files
