"""hyperprior coder: real payloads (range-coded z and y) decode to the deployable graph's output, the bytes match the
model's discrete-likelihood estimate, the file round trip, non-square grids, corrupt/wrong payloads, bad inputs, the
recipe pieces."""

import numpy as np
import pytest
import torch
from hp_inputs import TINY, low_rank_tokens, tiny_model
from ntc_export.codec import range_coding as rc
from ntc_export.codec.payload import Payload, pack_file, unpack, unpack_file
from ntc_export.util.atomic import write_bytes
from ntc_export.util.errors import NtcError


def _one_line(excinfo):
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


def test_payloads_decode_to_the_deployable_graph(model, tokens):
    payloads = model.encode(tokens)
    latents = model.prepare_inputs(tokens)["latents"]
    assert latents.dtype == np.float32 and latents.shape == (3, TINY["latent"], 8, 8)
    np.testing.assert_array_equal(model.decode_latents(payloads), latents)  # lossless entropy coding
    decoded = model.decode(payloads)
    with torch.no_grad():
        golden = model(torch.from_numpy(latents)).numpy()
    np.testing.assert_allclose(decoded, golden, rtol=0, atol=1e-5)  # float32 kernels may differ by batch layout
    # The quantised latents are round(g_a(tokens)), and the decoded tokens are close to the input.
    with torch.no_grad():
        y = model.g_a(torch.from_numpy(tokens)).numpy()
    np.testing.assert_array_equal(latents, np.round(y))
    cos = (decoded * tokens).sum(-1) / np.linalg.norm(decoded, axis=-1) / np.linalg.norm(tokens, axis=-1)
    assert cos.mean() > 0.98


def test_actual_bytes_within_two_percent_of_the_estimate(model, tokens):
    payloads = model.encode(tokens)
    actual = np.array([len(p) for p in payloads], float)
    estimate = model.estimate_bytes(tokens)
    assert np.all(np.abs(actual - estimate) <= 0.02 * estimate), (actual, estimate)
    overhead = model.overhead_bytes()
    assert overhead == len(payloads[0]) - len(unpack(payloads[0]).body) + rc.FRAMING_BYTES  # header + framing
    # Body streams alone (no header, no framing): still within 2% plus the two streams' last partial words.
    body = actual - overhead
    assert np.all(np.abs(body - (estimate - overhead)) <= 0.02 * (estimate - overhead) + 8)


def test_payload_file_round_trip(model, tokens, tmp_path):
    payloads = model.encode(tokens)
    path = tmp_path / "tokens.ntcp"
    write_bytes(path, pack_file(payloads))
    assert [p.name for p in tmp_path.iterdir()] == ["tokens.ntcp"]  # no temp file left behind
    back = unpack_file(path.read_bytes())
    assert back == payloads
    np.testing.assert_array_equal(model.decode_latents(back), model.prepare_inputs(tokens)["latents"])
    with torch.no_grad():
        golden = model(torch.from_numpy(model.prepare_inputs(tokens)["latents"])).numpy()
    np.testing.assert_allclose(model.decode(back), golden, rtol=0, atol=1e-5)


def test_encode_is_batch_independent(model, tokens):
    one_by_one = [model.encode(tokens[i:i + 1])[0] for i in range(len(tokens))]
    assert one_by_one == model.encode(tokens)


def test_corrupt_and_foreign_payloads_are_refused(model, tokens):
    good = model.encode(tokens[:1])[0]
    p = unpack(good)
    with pytest.raises(NtcError, match="truncated"):
        model.decode([good[:-5]])
    cut = Payload(p.family, p.fingerprint, p.grid, p.body[: len(p.body) // 2]).pack()
    with pytest.raises(NtcError, match="corrupt|truncated|does not fit") as e:
        model.decode([cut])
    _one_line(e)
    with pytest.raises(NtcError, match="not 'hyperprior'") as e:
        model.decode([Payload("vq", p.fingerprint, p.grid, p.body).pack()])
    _one_line(e)
    with pytest.raises(NtcError, match="another hyperprior model"):
        model.decode([Payload(p.family, b"\1" * 8, p.grid, p.body).pack()])
    with pytest.raises(NtcError, match="token grid 300x18 is outside 1..256"):
        model.decode([Payload(p.family, p.fingerprint, (300, 18), p.body).pack()])
    with pytest.raises(NtcError, match="corrupt") as e:  # another grid's streams: the symbols' CRC disagrees
        model.decode([Payload(p.family, p.fingerprint, (18, 18), p.body).pack()])
    _one_line(e)
    header = len(good) - len(p.body)
    rng = np.random.default_rng(0)
    for _ in range(8):  # flipped bits anywhere in the streams: refused, never decoded into garbage
        data = bytearray(good)
        pos = int(rng.integers(header + 4, len(good) - 4))
        data[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(NtcError, match="corrupt") as e:
            model.decode([bytes(data)])
        _one_line(e)


def test_bad_inputs(model, tokens):
    with pytest.raises(NtcError, match=r"square grid\), got \[1, 10, 384\]"):
        model.encode(low_rank_tokens(1, grid=(2, 5)))  # flat tokens: only a square count says its grid
    with pytest.raises(NtcError, match="384"):
        model.encode(tokens[..., :100])
    with pytest.raises(NtcError, match=r"float32 \[B, 12"):
        model(torch.zeros(1, 5, 8, 8))
    with pytest.raises(NtcError, match="float32 tensor"):
        model(torch.zeros(1, 12, 8, 8, dtype=torch.float64))
    with pytest.raises(NtcError, match="no payloads"):
        model.decode([])
    model.train()
    try:
        with pytest.raises(NtcError, match="eval mode"):
            model.encode(tokens)
    finally:
        model.eval()


@pytest.mark.parametrize("grid", [(7, 5), (26, 46)])
def test_non_square_round_trip(model, tokens, grid):
    """decode(encode(t)) on a non-square grid: the image's own tokens [N, h*w, D], its grid in the payload, the
    latents of the grid padded to whole 2x2 cells (the graph's input), a cosine near the 16x16 figure, bytes as
    estimated."""
    h, w = grid
    t = low_rank_tokens(3, seed=17, grid=grid)
    payloads = model.encode(t.reshape(3, h, w, 384))
    assert all(unpack(p).grid == grid for p in payloads)
    latents = model.decode_latents(payloads)
    assert latents.shape == (3, TINY["latent"], -(-h // 2), -(-w // 2))
    np.testing.assert_array_equal(latents, model.prepare_inputs(t.reshape(3, h, w, 384))["latents"])
    decoded = model.decode(payloads)
    assert decoded.shape == (3, h * w, 384)
    with torch.no_grad():  # the graph's output on the padded grid, cropped
        golden = model(torch.from_numpy(latents)).numpy().reshape(3, 2 * latents.shape[2], 2 * latents.shape[3], 384)
    np.testing.assert_allclose(decoded, golden[:, :h, :w].reshape(3, h * w, 384), rtol=0, atol=1e-5)

    def cosine(a, b):
        return float(((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)).mean())

    assert cosine(decoded, t) >= cosine(model.decode(model.encode(tokens)), tokens) - 0.01
    actual = np.array([len(p) for p in payloads], float)
    estimate = model.estimate_bytes(t.reshape(3, h, w, 384))
    assert np.all(np.abs(actual - estimate) <= 0.02 * estimate), (actual, estimate)


def test_checkpoint_round_trip_keeps_payloads(model, tokens, tmp_path):
    from ntc_export.models import load, save

    save(model, tmp_path / "hp.pt", half=True)
    loaded = load(tmp_path / "hp.pt")
    assert loaded.config == model.config and abs(loaded.lam() - model.lam()) <= 1e-2 * model.lam()
    payloads = loaded.encode(tokens)
    assert payloads == loaded.encode(tokens)  # deterministic
    np.testing.assert_array_equal(loaded.decode_latents(payloads), loaded.prepare_inputs(tokens)["latents"])
    with pytest.raises(NtcError, match="another hyperprior model"):
        model.decode(payloads)  # fp16 weights: another fingerprint


def test_dual_ascent_moves_lambda_toward_the_target():
    m = tiny_model(1)
    tokens = torch.from_numpy(low_rank_tokens(2, seed=3))
    m.train()
    start = float(m.log_lambda)
    m.train_forward(tokens)
    target = tokens.shape[1] * tokens.shape[2] * 2 / m.config["target_rate"]
    over = m._last_bytes > target
    m.after_step(tokens)
    assert (float(m.log_lambda) > start) == over
    expected = start + m.config["lam_step"] * (m._last_bytes / target - 1)
    assert abs(float(m.log_lambda) - max(start - 0.5, min(start + 0.5, expected))) < 1e-6
    m.eval()


def test_water_fill_against_brute_force():
    from ntc_export.train.hyperprior import water_fill

    var = np.array([100.0, 10.0, 1.0, 0.1, 0.0])
    for bits in (0.5, 3.0, 12.0):
        d = water_fill(var, bits)
        spent = np.maximum(0, 0.5 * np.log2(var[var > 0] / d)).sum()
        assert abs(spent - bits) < 1e-6
        grid = np.exp(np.linspace(np.log(1e-8), np.log(100), 200001))
        best = grid[np.argmin([abs(np.maximum(0, 0.5 * np.log2(var[:4] / g)).sum() - bits) for g in grid[::100]]) * 100]
        assert abs(np.log(best / d)) < 0.05


def test_recipe_config_and_summary(model, tokens):
    from ntc_export.train import hyperprior as recipe

    c16, c100 = recipe.config_for_rate(14, transform="dense"), recipe.config_for_rate(128, transform="dense")
    assert c16["latent"] > c100["latent"] and c16["target_rate"] == 14.0
    with pytest.raises(NtcError, match="positive"):
        recipe.config_for_rate(0)
    s = recipe.summary(model, tokens, images=2)
    assert s["images"] == 2 and abs(s["actual_bytes"] - s["estimated_bytes"]) <= 0.02 * s["estimated_bytes"]
    assert s["lambda"] == round(model.lam(), 4) and not model.training


def test_train_compressor_smoke():
    from ntc_export.train.compressor import train_compressor

    tokens = low_rank_tokens(4, seed=21)
    result = train_compressor("hyperprior", dict(TINY, lam=5.0, lam_step=0.1), tokens, epochs=1, batch=2,
                              progress=False)
    s = result.summary
    assert result.history[0]["cosine"] > 0.5 and abs(s["actual_bytes"] - s["estimated_bytes"]) <= \
        0.02 * s["estimated_bytes"]
    assert s["lambda"] != 5.0  # dual ascent moved it; the buffer keeps the final value
    assert abs(result.module.lam() - s["lambda"]) < 1e-3
