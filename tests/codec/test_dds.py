"""DDS writer/reader: round trips, Pillow as an independent reader, legacy FourCC headers, malformed files."""

import struct

import numpy as np
import pytest
from ntc_export.codec.dds import DXGI_FORMATS, read_dds, write_dds
from ntc_export.codec.decode import BLOCK_BYTES, decode, encoded_size
from ntc_export.util.errors import NtcError
from PIL import Image


def _blocks(fmt: str, height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=encoded_size(fmt, height, width), dtype=np.uint8)


@pytest.mark.parametrize("fmt", list(DXGI_FORMATS))
def test_round_trip(tmp_path, fmt):
    h, w = 13, 22  # not multiples of 4: 4 x 6 blocks
    data = _blocks(fmt, h, w, seed=len(fmt))
    path = tmp_path / f"{fmt}.dds"
    write_dds(path, data, fmt, h, w)
    blocks, fmt2, h2, w2 = read_dds(path)
    assert (fmt2, h2, w2) == (fmt, h, w)
    assert blocks.shape == (24, BLOCK_BYTES[fmt]) and np.array_equal(blocks.reshape(-1), data)
    raw = path.read_bytes()
    assert raw[:4] == b"DDS " and struct.unpack_from("<I", raw, 128)[0] == DXGI_FORMATS[fmt]
    assert len(raw) == 4 + 124 + 20 + data.size


def _pillow_rgba(path) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        return np.asarray(im)


# Pillow's channel layout per format: which of our channels its image holds.
@pytest.mark.parametrize("fmt", ["bc1", "bc4", "bc5", "bc7"])
def test_pillow_decodes_our_files_like_our_decoder(tmp_path, fmt):
    h, w = 32, 48
    data = _blocks(fmt, h, w, seed=11)
    path = tmp_path / f"{fmt}.dds"
    write_dds(path, data, fmt, h, w)
    ours = decode(data, fmt, h, w).astype(np.int16)
    theirs = _pillow_rgba(path).astype(np.int16)
    if fmt == "bc5":
        theirs = theirs[..., :2]  # Pillow returns RGB with blue = 0
        assert not theirs[..., 2:].any()
    if fmt == "bc1":
        # BC1 interpolation rounding is vendor-specific: within 1, alpha exact.
        assert np.abs(theirs - ours).max() <= 1
        assert np.array_equal(theirs[..., 3], ours[..., 3])
    else:
        assert np.array_equal(theirs, ours)


@pytest.mark.parametrize("fourcc,fmt", [(b"DXT1", "bc1"), (b"ATI1", "bc4"), (b"BC4U", "bc4"), (b"ATI2", "bc5"),
                                        (b"BC5U", "bc5")])
def test_legacy_fourcc_headers(tmp_path, fourcc, fmt):
    h, w = 8, 12
    data = _blocks(fmt, h, w, seed=3)
    flags = 0x1 | 0x2 | 0x4 | 0x1000 | 0x80000
    header = struct.pack("<7I44x", 124, flags, h, w, data.size, 0, 1)
    header += struct.pack("<II4s5I", 32, 0x4, fourcc, 0, 0, 0, 0, 0) + struct.pack("<4I4x", 0x1000, 0, 0, 0)
    path = tmp_path / "legacy.dds"
    path.write_bytes(b"DDS " + header + data.tobytes())
    blocks, fmt2, h2, w2 = read_dds(path)
    assert (fmt2, h2, w2) == (fmt, h, w) and np.array_equal(blocks.reshape(-1), data)
    ours = decode(blocks, fmt, h, w).astype(np.int16)
    theirs = _pillow_rgba(path).astype(np.int16)
    if fmt == "bc5":
        theirs = theirs[..., :2]
    assert np.abs(theirs - ours).max() <= (1 if fmt == "bc1" else 0)


def test_truncated_and_corrupted_files_raise_ntc_error(tmp_path):
    data = _blocks("bc7", 8, 8, seed=1)
    good = tmp_path / "good.dds"
    write_dds(good, data, "bc7", 8, 8)
    raw = good.read_bytes()
    bad = tmp_path / "bad.dds"
    for n in range(len(raw)):  # every truncation
        bad.write_bytes(raw[:n])
        with pytest.raises(NtcError):
            read_dds(bad)
    rng = np.random.default_rng(9)
    for _ in range(500):  # random corruption of the headers: parses or raises NtcError, nothing else
        mutated = bytearray(raw)
        for pos in rng.integers(0, 148, size=rng.integers(1, 6)):
            mutated[pos] = rng.integers(0, 256)
        bad.write_bytes(bytes(mutated))
        try:
            blocks, fmt, h, w = read_dds(bad)
        except NtcError:
            continue
        assert blocks.size == encoded_size(fmt, h, w)
    with pytest.raises(NtcError, match="cannot read"):
        read_dds(tmp_path / "missing.dds")


def test_writer_rejects_bad_input(tmp_path):
    with pytest.raises(NtcError, match="must be 64 bytes"):
        write_dds(tmp_path / "x.dds", bytes(63), "bc7", 8, 8)
    with pytest.raises(NtcError, match="cannot write BC format"):
        write_dds(tmp_path / "x.dds", bytes(64), "bc3", 8, 8)
    with pytest.raises(NtcError, match="positive"):
        write_dds(tmp_path / "x.dds", bytes(64), "bc7", 0, 8)
    assert not list(tmp_path.iterdir())  # nothing half-written
