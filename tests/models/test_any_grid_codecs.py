"""Compressors at any grid: payloads of a non-square or odd grid record that grid, decode to exactly its tokens, equal
coding the grid padded by edge repetition (numpy's np.pad "edge") and cropping, and code real tokens of a
non-square photograph about as well as a square one."""

import numpy as np
import pytest
from ntc_export.codec.payload import unpack
from ntc_export.evaluate.fidelity import token_cosine
from ntc_export.evaluate.grid_sweep import photo_tokens
from ntc_export.models import load
from ntc_export.commands.demo import ZOO_DIR

CODECS = ("bcae_x16", "vq_x16")


@pytest.fixture(scope="module", params=CODECS)
def codec(request):
    return load(ZOO_DIR / f"{request.param}.pt").eval()


@pytest.mark.parametrize("grid", [(7, 5), (26, 46)])
def test_payload_round_trip_keeps_the_grid_and_equals_pad_then_crop(codec, grid):
    h, w = grid
    tokens = photo_tokens(grid).grid_tokens  # [N, h, w, D] real ViT tokens at this grid
    payloads = codec.encode(tokens)
    assert all(unpack(p).grid == grid for p in payloads)
    out = codec.decode(payloads)
    assert out.shape == (len(tokens), h * w, tokens.shape[-1])
    m = codec.grid_multiple
    hp, wp = -(-h // m) * m, -(-w // m) * m
    padded = np.pad(tokens, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)), mode="edge")
    whole = codec.decode(codec.encode(padded)).reshape(len(tokens), hp, wp, -1)
    np.testing.assert_array_equal(out.reshape(len(tokens), h, w, -1), whole[:, :h, :w])


def test_a_non_square_photo_codes_as_well_as_a_square_one(codec):
    square, wide = photo_tokens((24, 24)), photo_tokens((26, 46))
    cos = {g.grid: token_cosine(g.patch_tokens, codec.decode(codec.encode(g.grid_tokens))) for g in (square, wide)}
    assert cos[(26, 46)] >= cos[(24, 24)] - 0.01, cos
