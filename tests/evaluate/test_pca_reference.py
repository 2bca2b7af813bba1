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
