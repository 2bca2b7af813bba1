"""Payload framing: round trips, and one-line errors for truncated, padded or foreign bytes; decoded-token files of
one grid or several."""

import numpy as np
import pytest
from ntc_export.codec.payload import (Payload, expect, grid_groups, is_decoded_file, pack_file, read_decoded, unpack,
                                      unpack_file, write_decoded)
from ntc_export.util.errors import NtcError

FP = bytes(range(8))


def test_payload_round_trip_and_length():
    p = Payload("bc_autoencoder", FP, (16, 16), b"\x01\x02\x03")
    data = p.pack()
    assert unpack(data) == p
    assert len(data) == 4 + 1 + 1 + len("bc_autoencoder") + 8 + 2 + 2 + 4 + 3  # every byte is accounted for


@pytest.mark.parametrize("cut", [1, 10, 30])
def test_truncated_payload_is_refused(cut):
    data = Payload("pca", FP, (4, 4), bytes(20)).pack()
    with pytest.raises(NtcError, match="truncated|no NTCP header"):
        unpack(data[:-cut] if cut < len(data) else data[:2])


def test_padded_and_foreign_payloads_are_refused():
    data = Payload("pca", FP, (4, 4), bytes(20)).pack()
    with pytest.raises(NtcError, match="header says 20"):
        unpack(data + b"\0")
    with pytest.raises(NtcError, match="no NTCP header"):
        unpack(b"PK\x03\x04" + data)
    with pytest.raises(NtcError, match="written by a 'pca' compressor, not 'bc_autoencoder'"):
        expect(unpack(data), "bc_autoencoder", FP)
    with pytest.raises(NtcError, match="another pca model"):
        expect(unpack(data), "pca", bytes(8))


def test_payload_file_round_trip_and_truncation():
    payloads = [Payload("pca", FP, (4, 4), bytes([i]) * i).pack() for i in range(5)]
    data = pack_file(payloads)
    assert unpack_file(data) == payloads
    with pytest.raises(NtcError, match="truncated"):
        unpack_file(data[:-1])
    with pytest.raises(NtcError, match="bytes after the last"):
        unpack_file(data + b"x")


def test_payloads_group_by_their_recorded_grid_in_order_of_first_image():
    grids = [(7, 5), (16, 16), (7, 5), (1, 1), (16, 16)]
    payloads = [Payload("pca", FP, g, bytes([i])).pack() for i, g in enumerate(grids)]
    groups = grid_groups(payloads)
    assert [(idx.tolist(), [unpack(p).grid for p in ps]) for idx, ps in groups] == [
        ([0, 2], [(7, 5)] * 2), ([1, 4], [(16, 16)] * 2), ([3], [(1, 1)])]
    assert [unpack(p).body for _, ps in groups for p in ps] == [b"\0", b"\2", b"\1", b"\4", b"\3"]
    with pytest.raises(NtcError, match="payload 1: not an ntc-export"):
        grid_groups([payloads[0], b"junk"])


def test_decoded_files_of_one_grid_and_of_several(tmp_path):
    rng = np.random.default_rng(0)
    one = rng.standard_normal((3, 7, 5, 4)).astype(np.float32)
    write_decoded(tmp_path / "one.npz", [(np.arange(3), one)], 3)
    with np.load(tmp_path / "one.npz") as z:  # the flat patch_tokens older readers take, and the grid beside them
        assert z["patch_tokens"].shape == (3, 35, 4) and z["grid"].tolist() == [7, 5]
    (idx, back), = read_decoded(tmp_path / "one.npz")
    assert idx.tolist() == [0, 1, 2] and np.array_equal(back, one) and is_decoded_file(tmp_path / "one.npz")
    a, b = rng.standard_normal((2, 2, 3, 4)).astype(np.float32), rng.standard_normal((1, 4, 1, 4)).astype(np.float32)
    write_decoded(tmp_path / "ragged.npz", [(np.array([0, 2]), a), (np.array([1]), b)], 3)
    with np.load(tmp_path / "ragged.npz") as z:  # image by image: rows 0:6 image 0, 6:10 image 1, 10:16 image 2
        assert z["offsets"].tolist() == [0, 6, 10, 16] and z["grids"].tolist() == [[2, 3], [4, 1], [2, 3]]
        np.testing.assert_array_equal(z["packed_patch_tokens"][6:10], b[0].reshape(4, 4))
        np.testing.assert_array_equal(z["packed_patch_tokens"][10:], a[1].reshape(6, 4))
    groups = read_decoded(tmp_path / "ragged.npz")
    assert [g[0].tolist() for g in groups] == [[0, 2], [1]]
    assert np.array_equal(groups[0][1], a) and np.array_equal(groups[1][1], b)
    np.savez(tmp_path / "old.npz", patch_tokens=one.reshape(3, 35, 4)[:, :25])  # no grid: a square one
    assert read_decoded(tmp_path / "old.npz")[0][1].shape == (3, 5, 5, 4)
    np.savez(tmp_path / "bad.npz", packed_patch_tokens=np.zeros((5, 4)), grids=np.array([[2, 3]]),
             offsets=np.array([0, 6]))
    with pytest.raises(NtcError, match="not a consistent ragged decoded-token file"):
        read_decoded(tmp_path / "bad.npz")
    assert not is_decoded_file(tmp_path / "missing.npz")
