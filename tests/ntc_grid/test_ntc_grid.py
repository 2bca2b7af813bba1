"""ntc_grid: 4-neighbour and bilinear sampling vs numpy references, the PCA-pyramid start, per-image optimisation,
payload round trips and corrupt payloads, bad graph inputs, export -> ONNX Runtime fidelity (int4 and BC5)."""

import copy
import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ntc_export.codec.payload import Payload, unpack
from ntc_export.models import build
from ntc_export.models import ntc_grid as ng
from ntc_export.train import ntc_grid as recipe
from ntc_export.util.errors import NtcError

TINY = dict(fine_channels=8, coarse_channels=4, hidden=16, layers=2, opt_steps=12, opt_lr=0.004)


def synthetic_tokens(n=6, rank=24, seed=0) -> np.ndarray:
    """Low-rank Gaussian tokens [n, 256, 384] with a shared mean token and smooth spatial structure (one
    distribution: the basis and mean are fixed, `seed` draws the images)."""
    fixed = np.random.default_rng(1234)
    basis = fixed.standard_normal((rank, 384)).astype(np.float32)
    mean = fixed.standard_normal(384)
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((n, rank, 4, 4)).astype(np.float32)
    smooth = F.interpolate(torch.from_numpy(coarse), size=(16, 16), mode="bilinear", align_corners=False).numpy()
    codes = smooth.reshape(n, rank, 256).transpose(0, 2, 1) + 0.5 * rng.standard_normal((n, 256, rank))
    return (codes @ basis / rank ** 0.5 + mean).astype(np.float32)


def model(storage="int4", seed=0, mlp=True):
    """A tiny model on the PCA pyramid of synthetic tokens, MLP weights perturbed (as after training)."""
    return copy.deepcopy(_model(storage, seed, mlp))


@functools.lru_cache(maxsize=None)
def _model(storage, seed, mlp):
    torch.manual_seed(seed)
    m = build("ntc_grid", dict(TINY, storage=storage))
    recipe.pyramid_init(m, synthetic_tokens(8, seed=seed + 1))
    if mlp:
        with torch.no_grad():
            m.mlp_out.weight.normal_(0, 0.02)
            m.mlp_out.bias.normal_(0, 0.02)
    return m.eval()


# ---- sampling -----------------------------------------------------------------------------------------------------

def _sample_coord(i, grid, side):
    return (i + 0.5) * side / grid - 0.5


def test_four_neighbour_sampling_matches_loop_reference():
    m = model(mlp=False)
    rng = np.random.default_rng(3)
    fine = rng.standard_normal((2, 8, 8, m.cf)).astype(np.float32)  # [B, y, x, C]
    ref = np.zeros((2, 16, 16, 4 * m.cf), np.float32)
    for i in range(16):
        for j in range(16):
            y0 = int(np.floor(_sample_coord(i, 16, 8)))
            x0 = int(np.floor(_sample_coord(j, 16, 8)))
            texels = [fine[:, min(max(y, 0), 7), min(max(x, 0), 7)]
                      for y, x in ((y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1))]
            ref[:, i, j] = np.concatenate(texels, axis=-1)
    nb, _ = m.sample(torch.from_numpy(fine.reshape(2, 64, m.cf)), torch.zeros(2, 16, m.cc))
    np.testing.assert_array_equal(nb.numpy().reshape(2, 16, 16, -1), ref)
    # The token's own texel (i // 2, j // 2) is always one of its 4 neighbours (the fine skip reads it).
    idx = ng.neighbour_index()
    own = (np.arange(16)[:, None] // 2 * 8 + np.arange(16)[None, :] // 2).reshape(-1)
    assert all(o in row for o, row in zip(own, idx))


def test_bilinear_coarse_sampling_matches_numpy_and_interpolate():
    m = model(mlp=False)
    rng = np.random.default_rng(4)
    coarse = rng.standard_normal((2, 4, 4, m.cc)).astype(np.float32)
    ref = np.zeros((2, 16, 16, m.cc), np.float32)
    for i in range(16):
        for j in range(16):
            y, x = (np.clip(_sample_coord(t, 16, 4), 0, 3) for t in (i, j))
            y0, x0 = min(int(y), 2), min(int(x), 2)
            ty, tx = y - y0, x - x0
            ref[:, i, j] = ((1 - ty) * (1 - tx) * coarse[:, y0, x0] + (1 - ty) * tx * coarse[:, y0, x0 + 1]
                            + ty * (1 - tx) * coarse[:, y0 + 1, x0] + ty * tx * coarse[:, y0 + 1, x0 + 1])
    _, co = m.sample(torch.zeros(2, 64, m.cf), torch.from_numpy(coarse.reshape(2, 16, m.cc)))
    np.testing.assert_allclose(co.numpy().reshape(2, 16, 16, -1), ref, rtol=0, atol=1e-5)
    up = F.interpolate(torch.from_numpy(coarse).permute(0, 3, 1, 2), size=(16, 16), mode="bilinear",
                       align_corners=False)
    np.testing.assert_allclose(co.numpy().reshape(2, 16, 16, -1), up.permute(0, 2, 3, 1).numpy(), atol=1e-5)


def test_hgelu_clamp_and_position_encoding():
    x = torch.tensor([-4.0, -1.5, -0.75, 0.0, 1.0, 1.5, 3.0, 5.0])
    ref = np.minimum(x.numpy(), 3) * np.clip(x.numpy() / 3 + 0.5, 0, 1)
    np.testing.assert_allclose(ng.hgelu_clamp(x).numpy(), ref, atol=1e-7)
    assert float(ng.hgelu_clamp(torch.linspace(-5, 5, 1001)).min()) == pytest.approx(-3 / 16, abs=1e-4)
    pe = ng.position_encoding()
    assert pe.shape == (256, 16) and (pe.sum(1) == 1).all() and pe[17].argmax() == 5  # token (1, 1)


# ---- rate, start, optimisation ------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [16, 32, 64])
def test_rate_bookkeeping(rate):
    for storage in ("int4", "bc5"):
        cfg = recipe.config_for_rate(rate, storage=storage)
        m = build("ntc_grid", dict(cfg, hidden=8))
        assert m.bytes_per_image() * rate == 256 * 384 * 2
        assert 4 * (64 * cfg["fine_channels"] + 16 * cfg["coarse_channels"]) * rate == 16 * 256 * 384
    assert recipe.config_for_rate(16)["fine_channels"] * 64 * 4 + 128 * 16 * 4 == 98304


def test_pyramid_start_is_the_linear_pyramid_coder():
    """Untrained (MLP output zero), amortised encoder + decoder = coarse PCA of 4x4 means, then 2x2-cell PCA of the
    residual, computed here directly in numpy; the 4-bit rounding of both levels included."""
    m = model(mlp=False)
    x = synthetic_tokens(2, seed=9)
    with torch.no_grad():
        got = m.reconstruct(torch.from_numpy(x)).numpy()
    wc, wf = m.w_coarse.detach().numpy(), m.w_fine.detach().numpy()
    means = x.reshape(2, 4, 4, 4, 4, 384).mean((2, 4)).reshape(2, 16, 384)
    uc = np.clip((means - m.coarse_center.numpy()) @ np.linalg.pinv(wc) + 0.5, 0, 1)
    fc = np.round(uc * 15) / 15 - 0.5
    base = np.einsum("tk,bkc->btc", ng.bilinear_matrix(), fc) @ wc
    cells = (x - base).reshape(2, 8, 2, 8, 2, 384).transpose(0, 1, 3, 2, 4, 5).reshape(2, 64, 1536)
    uf = np.clip((cells - m.bias.detach().numpy()) @ np.linalg.pinv(wf) + 0.5, 0, 1)
    out = (np.round(uf * 15) / 15 - 0.5) @ wf + m.bias.detach().numpy()
    ref = out.reshape(2, 8, 8, 2, 2, 384).transpose(0, 1, 3, 2, 4, 5).reshape(2, 256, 384) + base
    np.testing.assert_allclose(got, ref, atol=2e-4)
    cos = F.cosine_similarity(torch.from_numpy(got), torch.from_numpy(x), dim=-1).mean()
    assert cos > 0.8


@pytest.mark.parametrize("storage", ["int4", "bc4"])
def test_per_image_optimisation_lowers_the_amortised_error(storage):
    m = model(storage)
    x = torch.from_numpy(synthetic_tokens(4, seed=5))
    with torch.no_grad():
        start = m.image_loss(m.reconstruct(x), x)
    qf, qc = m.optimise(x, steps=25)
    with torch.no_grad():
        opt = m.image_loss(m.decode_unit(qf, qc), x)
    assert (opt < start).all()  # every image gains (each keeps its best latents, so none can lose)
    assert float(opt.mean()) < 0.99 * float(start.mean())
    # One batch = independent per-image runs: image 0 alone gets the same latents.
    qf0, qc0 = m.optimise(x[:1], steps=25)
    torch.testing.assert_close(qf0, qf[:1], atol=1e-5, rtol=0)
    torch.testing.assert_close(qc0, qc[:1], atol=1e-5, rtol=0)


# ---- payloads -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("storage", ["int4", "bc5"])
def test_payload_round_trip(storage):
    m = model(storage)
    x = synthetic_tokens(3, seed=7)
    fine_in, coarse_in = m.compress(x, steps=5)
    payloads = m.encode(x, steps=5)
    header = len(Payload("ntc_grid", b"\0" * 8, (16, 16), b"").pack())
    assert all(len(p) == m.bytes_per_image() + header for p in payloads)
    assert unpack(payloads[0]).grid == (16, 16)
    decoded = m.decode(payloads)
    golden = m.decompress(fine_in, coarse_in)
    np.testing.assert_allclose(decoded, golden, atol=1e-5, rtol=0)  # other batches: float summation order
    # The host storage (4-bit codes / host BC encoder) decodes to what the simulated quantiser gave.
    qf, qc = m.optimise(torch.from_numpy(x), steps=5)
    with torch.no_grad():
        np.testing.assert_allclose(decoded, m.decode_unit(qf, qc).numpy(), atol=1e-5)


def test_nibble_packing_reference():
    codes = np.array([1, 15, 0, 7, 9, 3], np.int32)
    assert ng.pack_nibbles(codes) == bytes([0xF1, 0x70, 0x39])
    np.testing.assert_array_equal(ng.unpack_nibbles(ng.pack_nibbles(codes)), codes)


def test_corrupt_payloads_raise_one_line_errors():
    m = model()
    good = m.encode(synthetic_tokens(1), steps=2)[0]
    p = unpack(good)
    cases = {
        "truncated": good[:-3],
        "bc_autoencoder": Payload("bc_autoencoder", p.fingerprint, p.grid, p.body).pack(),
        "needs": Payload("ntc_grid", p.fingerprint, p.grid, p.body[:-2]).pack(),
        "another ntc_grid model": Payload("ntc_grid", b"\1" * 8, p.grid, p.body).pack(),
        "codes 16x16 only": Payload("ntc_grid", p.fingerprint, (8, 8), p.body).pack(),
    }
    for what, data in cases.items():
        with pytest.raises(NtcError, match=what) as err:
            m.decode([data])
        assert "\n" not in str(err.value)
    with pytest.raises(NtcError, match="no payloads"):
        m.decode([])


def test_bad_inputs_raise():
    m = model()
    codes, coarse = m.example_inputs(1)
    with pytest.raises(NtcError, match=r"codes must be INT32 \[B, 8, 8, 8\]"):
        m(codes[:, :4], coarse)
    with pytest.raises(NtcError, match="0..15"):
        m(codes + 1, coarse)
    with pytest.raises(NtcError, match="int32"):
        m(codes.long(), coarse)
    with pytest.raises(NtcError, match="static 16x16"):
        m.compress(np.zeros((1, 64, 384), np.float32))
    with pytest.raises(NtcError, match="storage"):
        build("ntc_grid", dict(TINY, storage="bc7"))
    with pytest.raises(NtcError, match="do not fit bc5"):
        build("ntc_grid", dict(TINY, fine_channels=7, storage="bc5"))
    b = model("bc5")
    blocks, cblocks = b.example_inputs(1)
    assert list(blocks.shape) == [1, 4, 2, 2, 4] and list(cblocks.shape) == [1, 2, 1, 1, 4]
    profiles = b.input_profiles((1, 4, 8), (16, 16, 32))  # the grid is static: profiles vary the batch only
    assert profiles["blocks"] == [[1, 4, 2, 2, 4], [4, 4, 2, 2, 4], [8, 4, 2, 2, 4]]
    with pytest.raises(NtcError, match=r"coarse_blocks must be INT32 \[B, 2, 1, 1, 4\]"):
        b(blocks, cblocks[..., :2])


# ---- export -------------------------------------------------------------------------------------------------------

def _export_and_validate(tmp_path, storage, precision):
    import onnx
    from ntc_export.backend.onnx.export import export_model
    from ntc_export.evaluate.validate import validate_onnx

    m = model(storage, seed=2)
    with torch.no_grad():
        for layer in m.mlp:  # non-trivial hidden layers
            layer.bias.normal_(0, 0.1)
    paths = export_model(m, tmp_path, precisions=(precision,), name=f"ntc_{storage}")
    graph = onnx.load(str(paths[precision])).graph
    assert [i.name for i in graph.input] == m.input_names
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT32 for i in graph.input)
    assert sum(n.op_type == "BcDecode" and n.domain == "ntc" for n in graph.node) == (0 if storage == "int4" else 2)
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] == "batch" and all(isinstance(d, int) for d in dims[1:])  # the grid is static
    tokens = synthetic_tokens(3, seed=11)
    return {r["precision"]: r for r in validate_onnx(f"ntc_{storage}", m, paths, tokens)}[precision]


@pytest.mark.parametrize("storage", ["int4", "bc5"])
def test_export_fp32_validates_in_onnx_runtime(tmp_path, storage):
    record = _export_and_validate(tmp_path, storage, "fp32")
    assert record["rel_l2"] <= 1e-5 and record["pass"]


@pytest.mark.parametrize("storage", ["int4", "bc4"])
def test_export_fp16_validates_in_onnx_runtime(tmp_path, storage):
    record = _export_and_validate(tmp_path, storage, "fp16")
    assert record["cosine"] >= 0.9995 and record["pass"]
