"""The PCA + uniform quantization reference line against scikit-learn's PCA, and its codes, bit packing, bytes and
reconstruction against a hand computation, on seeded data."""

import numpy as np
from ntc_export.codec.payload import unpack
from ntc_export.evaluate import pca_reference
from sklearn.decomposition import PCA

D, SIDE = 12, 4


def seeded_tokens(n: int, seed: int) -> np.ndarray:
    """[n, SIDE*SIDE, D]: anisotropic Gaussian (distinct variances, rotated) around a mean far from zero."""
    rng = np.random.default_rng(seed)
    rot = np.linalg.qr(rng.standard_normal((D, D)))[0]
    x = rng.standard_normal((n, SIDE * SIDE, D)) * np.geomspace(4.0, 0.2, D)
    return (x @ rot + np.linspace(2.0, 5.0, D)).astype(np.float32)


TRAIN = seeded_tokens(8, seed=0)
VAL = seeded_tokens(2, seed=1)


def sklearn_pca() -> tuple[PCA, np.ndarray]:
    """sklearn's full PCA of the training tokens, and the sign per component that aligns it with fit_basis."""
    pca = PCA(svd_solver="full").fit(TRAIN.reshape(-1, D).astype(np.float64))
    _, directions = pca_reference.fit_basis(TRAIN)
    signs = np.sign((directions * pca.components_).sum(1))  # principal directions are defined up to sign
    return pca, signs


def test_fit_basis_matches_sklearn_pca():
    mean, directions = pca_reference.fit_basis(TRAIN)
    pca, signs = sklearn_pca()
    np.testing.assert_allclose(mean, pca.mean_, rtol=0, atol=1e-5)
    np.testing.assert_allclose(directions * signs[:, None], pca.components_, rtol=0, atol=1e-5)
    proj = (TRAIN.reshape(-1, D) - mean) @ directions.T
    np.testing.assert_allclose(proj.var(0, ddof=1), pca.explained_variance_, rtol=1e-4)  # decreasing variance


def test_clip_ranges_are_percentiles_of_sklearn_projections():
    mean, directions = pca_reference.fit_basis(TRAIN)
    pca, signs = sklearn_pca()
    ref = pca.transform(TRAIN.reshape(-1, D)) * signs
    lo, hi = pca_reference.clip_ranges(TRAIN, mean, directions[:5])
    np.testing.assert_allclose(lo, np.percentile(ref[:, :5], 0.1, axis=0), rtol=0, atol=1e-4)
    np.testing.assert_allclose(hi, np.percentile(ref[:, :5], 99.9, axis=0), rtol=0, atol=1e-4)


def codes_from_body(body: bytes, count: int, bits: int) -> np.ndarray:
    """Hand unpacking: the body as one big-endian bit string, `count` codes of `bits` bits each, MSB first."""
    text = format(int.from_bytes(body, "big"), f"0{8 * len(body)}b")
    return np.array([int(text[i * bits:(i + 1) * bits], 2) for i in range(count)])


def assert_codes_round(got: np.ndarray, scaled: np.ndarray) -> None:
    """got == rint(scaled), except within 1e-4 of a rounding boundary (float32 vs float64 may round either way)."""
    near = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-4
    assert np.array_equal(got[~near], np.rint(scaled)[~near])
    assert np.abs(got - scaled).max() <= 0.5 + 1e-4


def test_codes_bytes_and_reconstruction_by_hand():
    k, bits = 5, 3  # 15 bits per token: codes straddle byte boundaries
    codec = pca_reference.codec(TRAIN, *pca_reference.fit_basis(TRAIN), k=k, bits=bits)
    pca, signs = sklearn_pca()
    levels = 2 ** bits - 1
    payloads = codec.encode(VAL)
    decoded = codec.decode(payloads)
    for image, data in enumerate(payloads):
        p = unpack(data)
        assert p.family == "pca" and p.grid == (SIDE, SIDE)
        assert len(p.body) == -(-SIDE * SIDE * k * bits // 8)  # 240 bits -> 30 bytes, nothing else in the body
        codes = codes_from_body(p.body, SIDE * SIDE * k, bits).reshape(-1, k)
        proj = pca.transform(VAL[image].astype(np.float64))[:, :k] * signs[:k]
        scaled = (np.clip(proj, codec.lo, codec.hi) - codec.lo) / (codec.hi - codec.lo) * levels
        assert_codes_round(codes, scaled)
        proj_hat = codec.lo + codes / levels * (codec.hi - codec.lo)
        ref = (proj_hat * signs[:k]) @ pca.components_[:k] + pca.mean_  # sklearn's inverse_transform, k components
        np.testing.assert_allclose(decoded[image], ref, rtol=0, atol=1e-4)


def test_all_components_at_8_bits_reconstruct_within_half_a_step():
    codec = pca_reference.codec(TRAIN, *pca_reference.fit_basis(TRAIN), k=D, bits=8)
    pca, _ = sklearn_pca()
    x = TRAIN[:2]
    proj = pca.transform(x.reshape(-1, D))
    inside = (np.abs(proj) < 0.9 * np.minimum(-codec.lo, codec.hi)).all(1)  # tokens the clipping leaves alone
    err = np.abs(codec.decode(codec.encode(x)).reshape(-1, D) - x.reshape(-1, D))[inside]
    # Orthonormal basis: the token error is the projection error, at most half a step per component.
    step = (codec.hi - codec.lo) / 255
    assert inside.sum() > 16 and np.linalg.norm(err, axis=1).max() <= 0.5 * np.linalg.norm(step) + 1e-4


def test_for_rate_spends_the_bit_budget():
    for rate in (8, 16, 32):
        codec = pca_reference.for_rate(TRAIN, rate)
        budget = D * 16 / rate  # bits per token of fp16 tokens / rate
        assert codec.bits in pca_reference.BITS and codec.components == min(D, int(budget // codec.bits))
        body = unpack(codec.encode(VAL)[0]).body
        assert len(body) == -(-SIDE * SIDE * codec.components * codec.bits // 8)


def test_any_grid_payloads_record_the_grid_and_code_each_token_alone():
    codec = pca_reference.codec(TRAIN, *pca_reference.fit_basis(TRAIN), k=5, bits=3)
    x = seeded_tokens(2, seed=2)[:, :15].reshape(2, 3, 5, D)  # a 3x5 grid
    payloads = codec.encode(x)
    assert [unpack(p).grid for p in payloads] == [(3, 5), (3, 5)]
    assert all(len(unpack(p).body) == -(-15 * 5 * 3 // 8) for p in payloads)
    row = codec.decode(codec.encode(x.reshape(2, 1, 15, D)))  # the same tokens as one 1x15 row
    np.testing.assert_array_equal(codec.decode(payloads), row)


def test_cell_codec_pads_a_7x5_grid_by_edge_repetition_and_crops_back():
    """Reference by hand: numpy's edge padding to 8x6, 2x2 cells in (row, col) order, the inner codec on those cells,
    cells laid back out and cropped to 7x5."""
    rng = np.random.default_rng(3)
    train = rng.standard_normal((6, 4, 4 * D)).astype(np.float32)
    inner = pca_reference.codec(train, *pca_reference.fit_basis(train), k=6, bits=4)
    cells_codec = pca_reference.CellPcaCodec(inner, 2)
    x = rng.standard_normal((2, 7, 5, D)).astype(np.float32)
    payloads = cells_codec.encode(x)
    assert [unpack(p).grid for p in payloads] == [(7, 5)] * 2
    assert all(len(unpack(p).body) == -(-12 * 6 * 4 // 8) for p in payloads)  # 4x3 cells of the 8x6 grid
    padded = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)), mode="edge")
    cells = np.stack([np.concatenate([padded[:, 2 * i, 2 * j], padded[:, 2 * i, 2 * j + 1], padded[:, 2 * i + 1, 2 * j],
                                      padded[:, 2 * i + 1, 2 * j + 1]], -1) for i in range(4) for j in range(3)], 1)
    values = inner._values(inner._codes(cells)).reshape(2, 4, 3, 2, 2, D)  # [n, cell row, cell col, r, c, D]
    ref = values.transpose(0, 1, 3, 2, 4, 5).reshape(2, 8, 6, D)[:, :7, :5].reshape(2, 35, D)
    np.testing.assert_allclose(cells_codec.decode(payloads), ref, rtol=0, atol=1e-6)


def test_training_tokens_of_several_grids_fit_as_one_pool_of_tokens():
    a, b = seeded_tokens(3, seed=4), seeded_tokens(2, seed=5)[:, :9]  # 16 and 9 tokens per image
    mean, directions = pca_reference.fit_basis([a, b])
    pca = PCA(svd_solver="full").fit(np.concatenate([a.reshape(-1, D), b.reshape(-1, D)]).astype(np.float64))
    np.testing.assert_allclose(mean, pca.mean_, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.abs((directions * pca.components_).sum(1)), 1.0, rtol=0, atol=1e-4)
    codec = pca_reference.for_rate([a, b], 8)
    assert codec.components == min(D, int(D * 16 / 8 // codec.bits))
