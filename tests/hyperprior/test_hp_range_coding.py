"""Host range coding (constriction): round trips, code lengths against -log2 of the models, body framing errors."""

import math

import numpy as np
import pytest
from ntc_export.codec import range_coding as rc
from ntc_export.util.errors import NtcError


def test_categorical_round_trip_and_length():
    rng = np.random.default_rng(0)
    pmfs = rng.random((6, 9)) ** 3
    pmfs[:, 7:] = 0  # zero-padded rows, as the factorized prior's tables
    rows = pmfs[rng.integers(0, 6, 3000)]
    p = rows / rows.sum(1, keepdims=True)
    symbols = np.array([rng.choice(9, p=r) for r in p])
    words = rc.encode_categorical(symbols, rows)
    np.testing.assert_array_equal(rc.decode_categorical(words, rows), symbols)
    ideal = -np.log2(p[np.arange(len(symbols)), symbols]).sum()
    assert ideal <= 32 * len(words) <= ideal * 1.01 + 64


def test_gaussian_round_trip_and_length():
    rng = np.random.default_rng(1)
    stds = np.exp(rng.uniform(np.log(0.11), np.log(300), 4000))
    symbols = np.round(rng.standard_normal(4000) * stds).astype(np.int32)
    symbols[:3] = [32767, -32767, 500]  # far tails still code (leaky model)
    words = rc.encode_gaussian(symbols, stds, 32767)
    np.testing.assert_array_equal(rc.decode_gaussian(words, stds, 32767), symbols)
    cdf = np.vectorize(lambda v: 0.5 * math.erfc(-v / math.sqrt(2)))
    p = cdf((symbols[3:] + 0.5) / stds[3:]) - cdf((symbols[3:] - 0.5) / stds[3:])
    ideal = -np.log2(np.maximum(p, 2.0 ** -24)).sum() + 3 * 24
    assert ideal * 0.99 <= 32 * len(words) <= ideal * 1.01 + 64
    with pytest.raises(NtcError, match="outside"):
        rc.encode_gaussian(np.array([40]), np.array([1.0]), 39)


def test_body_framing_and_crc():
    z, y = np.array([1, 2], np.uint32), np.array([3, 4, 5], np.uint32)
    crc = rc.symbols_crc(np.array([1, -2]), np.array([7]))
    body = rc.pack_body(z, y, crc)
    assert len(body) == 4 * (2 + 3) + rc.FRAMING_BYTES
    z2, y2, crc2 = rc.unpack_body(body)
    assert z2.tolist() == [1, 2] and y2.tolist() == [3, 4, 5] and crc2 == crc
    rc.check_crc(crc, "p", np.array([1, -2]), np.array([7]))
    with pytest.raises(NtcError, match="corrupt bitstream"):
        rc.check_crc(crc, "p", np.array([1, -2]), np.array([8]))
    for bad in (body[:6], body[:-1], b"\xff\x00\x00\x00" + body[4:]):
        with pytest.raises(NtcError, match="truncated|does not fit") as e:
            rc.unpack_body(bad, "payload 3")
        assert "\n" not in str(e.value) and "payload 3" in str(e.value)
