"""vq payloads: bit packing against a plain-Python reference, encode/decode round trip, corrupt payloads, bad index
tensors, rate bookkeeping."""

import numpy as np
import pytest
import torch
from ntc_export.codec.payload import Payload, unpack
from ntc_export.models.vq import pack_indices, unpack_indices
from ntc_export.train import vq as recipe
from ntc_export.util.errors import NtcError
from vq_inputs import low_rank_tokens, tiny_model


def reference_pack(values, bits: int) -> bytes:
    """Each value as `bits` binary digits, MSB first, concatenated and cut into bytes (last one zero-padded)."""
    stream = "".join(format(int(v), f"0{bits}b") for v in values)
    stream += "0" * (-len(stream) % 8)
    return bytes(int(stream[i:i + 8], 2) for i in range(0, len(stream), 8))


@pytest.mark.parametrize("bits", [1, 3, 8, 9, 12])
def test_pack_unpack_matches_reference(bits):
    rng = np.random.default_rng(bits)
    values = rng.integers(0, 1 << bits, size=(5, 7, 3))
    packed = pack_indices(values, bits)
    assert packed == reference_pack(values.reshape(-1), bits)
    assert len(packed) == -(-values.size * bits // 8)
    np.testing.assert_array_equal(unpack_indices(packed, values.size, bits), values.reshape(-1))


def test_rate_bookkeeping():
    for rate, cell_bits in ((16, 1536), (64, 384)):
        config = recipe.config_for_rate(rate)
        bits = config["groups"] * config["stages"] * 8
        assert bits == cell_bits == 4 * 384 * 16 // rate
    config = recipe.config_for_rate(16, codewords=300)  # 9-bit indices: 170 groups, 1530 bits per cell
    assert config["groups"] == 1536 // 9


@pytest.fixture(scope="module")
def model():
    return tiny_model(codewords=20)  # 5-bit indices with 12 unused code values: out of range is possible


def test_encode_decode_round_trip(model):
    tokens = low_rank_tokens(3, seed=5)
    payloads = model.encode(tokens)
    body_bits = model.channels * 64 * 5
    assert all(len(unpack(p).body) == -(-body_bits // 8) for p in payloads)
    assert model.bytes_per_image() == -(-body_bits // 8)
    decoded = model.decode(payloads)
    expected = model.reconstruct(torch.from_numpy(tokens)).detach().numpy()
    np.testing.assert_allclose(decoded, expected, rtol=1e-5, atol=1e-5)
    indices = model.compress(tokens)
    assert indices.dtype == np.int32 and indices.shape == (3, model.channels, 8, 8)
    np.testing.assert_array_equal(model.prepare_inputs(tokens)["indices"], indices)
    # The payload body is the indices in channel, row, column order.
    body = unpack(payloads[1]).body
    np.testing.assert_array_equal(unpack_indices(body, indices[1].size, 5).reshape(indices[1].shape), indices[1])


def _repack(payload: bytes, **changes) -> bytes:
    p = unpack(payload)
    fields = dict(family=p.family, fingerprint=p.fingerprint, grid=p.grid, body=p.body)
    fields.update(changes)
    return Payload(**fields).pack()


def test_corrupt_payloads_raise_one_line(model):
    good = model.encode(low_rank_tokens(1, seed=6))[0]
    body = unpack(good).body
    count = model.channels * 64
    out_of_range = unpack_indices(body, count, 5)
    out_of_range[17] = 31
    cases = {
        "header says": good[:-3],  # truncated
        "body bytes": _repack(good, body=body[:-1]),  # consistent header, short body
        "not 'vq'": _repack(good, family="bc_autoencoder"),
        "another vq model": _repack(good, fingerprint=b"\0" * 8),
        "out of range": _repack(good, body=pack_indices(out_of_range, 5)),
        "grid 17x17 needs": _repack(good, grid=(17, 17)),  # a grid the body does not hold
        "no NTCP": b"junk" + good,
    }
    for needle, payload in cases.items():
        with pytest.raises(NtcError, match=needle) as err:
            model.decode([payload])
        assert "\n" not in str(err.value)
    with pytest.raises(NtcError, match="no payloads"):
        model.decode([])


def test_bad_index_tensors_raise(model):
    good = torch.from_numpy(model.compress(low_rank_tokens(1, seed=7)))
    with pytest.raises(NtcError, match="int32"):
        model(good.long())
    with pytest.raises(NtcError, match=r"\[B, 8, h/2, w/2\]"):
        model(good[:, :5])
    with pytest.raises(NtcError, match=r"\[B, 8, h/2, w/2\]"):
        model(good[0])
    bad = good.clone()
    bad[0, 3, 2, 2] = 20
    with pytest.raises(NtcError, match="out of range"):
        model(bad)
    bad[0, 3, 2, 2] = -1
    with pytest.raises(NtcError, match="out of range"):
        model(bad)
    with pytest.raises(NtcError, match="not a square grid"):
        model.compress(np.zeros((1, 250, 384), np.float32))
    # an odd grid is padded to whole 2x2 cells: 15x15 tokens -> 8x8 cells
    assert model.compress(np.zeros((1, 225, 384), np.float32)).shape == (1, model.channels, 8, 8)
