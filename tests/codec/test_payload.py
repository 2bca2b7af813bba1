"""Payload framing: round trips, and one-line errors for truncated, padded or foreign bytes."""

import pytest
from ntc_export.codec.payload import Payload, expect, pack_file, unpack, unpack_file
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
