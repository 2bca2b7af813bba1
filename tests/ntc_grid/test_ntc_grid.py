"""ntc_grid: 4-neighbour and bilinear sampling vs numpy references (on the 16x16 design grid and across a non-square
one), the PCA-pyramid start, per-image optimisation, payload round trips on square and non-square grids and corrupt
payloads, bad graph inputs, export -> ONNX Runtime fidelity (int4 and BC5) on every grid."""

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


def synthetic_tokens(n=6, rank=24, seed=0, grid=(16, 16)) -> np.ndarray:
    """Low-rank Gaussian tokens [n, h*w, 384] with a shared mean token and smooth spatial structure (detail at the
    scale of 4x4 tokens, as on the 16x16 grid; one distribution: the basis and mean are fixed, `seed` draws the
    images)."""
    h, w = grid
    fixed = np.random.default_rng(1234)
    basis = fixed.standard_normal((rank, 384)).astype(np.float32)
    mean = fixed.standard_normal(384)
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((n, rank, -(-h // 4), -(-w // 4))).astype(np.float32)
    smooth = F.interpolate(torch.from_numpy(coarse), scale_factor=4, mode="bilinear", align_corners=False).numpy()
    smooth = smooth[:, :, :h, :w]
    codes = smooth.reshape(n, rank, h * w).transpose(0, 2, 1) + 0.5 * rng.standard_normal((n, h * w, rank))
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


def bilinear_matrix(grid: int = 16, side: int = 4) -> np.ndarray:
    """[grid*grid, side*side] weights of bilinear sampling of a side x side texture at the token centres (edge
    clamp), written out per texel weight: the design grid's sampling as a matrix."""
    u = np.clip(_sample_coord(np.arange(grid), grid, side), 0, side - 1)
    f0 = np.minimum(np.floor(u).astype(np.int64), side - 2)
    t = u - f0
    w1 = np.zeros((grid, side))
    w1[np.arange(grid), f0] = 1 - t
    w1[np.arange(grid), f0 + 1] += t
    return np.einsum("ia,jb->ijab", w1, w1).reshape(grid * grid, side * side).astype(np.float32)


@pytest.mark.parametrize("grid", [(16, 16), (12, 20), (4, 8)])
def test_four_neighbour_sampling_matches_loop_reference(grid):
    """Across the whole image (textures of any size), edge-clamped at its border only."""
    m = model(mlp=False)
    (h, w), (sh, sw) = grid, (grid[0] // 2, grid[1] // 2)
    rng = np.random.default_rng(3)
    fine = rng.standard_normal((2, sh, sw, m.cf)).astype(np.float32)  # [B, y, x, C]
    ref = np.zeros((2, h, w, 4 * m.cf), np.float32)
    for i in range(h):
        for j in range(w):
            y0 = int(np.floor(_sample_coord(i, h, sh)))
            x0 = int(np.floor(_sample_coord(j, w, sw)))
            texels = [fine[:, min(max(y, 0), sh - 1), min(max(x, 0), sw - 1)]
                      for y, x in ((y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1))]
            ref[:, i, j] = np.concatenate(texels, axis=-1)
    nb, _ = m.sample(torch.from_numpy(fine), torch.zeros(2, sh // 2, sw // 2, m.cc))
    np.testing.assert_array_equal(nb.numpy().reshape(2, h, w, -1), ref)
    # The token's own texel (i // 2) is always one of its 2 neighbour rows (the fine skip reads it).
    lo, hi = (r.numpy() for r in ng.neighbour_rows(h, sh))
    own = np.arange(h) // 2
    assert ((own == lo) | (own == hi)).all()


@pytest.mark.parametrize("grid", [(16, 16), (12, 20), (4, 8)])
def test_bilinear_coarse_sampling_matches_numpy_and_interpolate(grid):
    m = model(mlp=False)
    (h, w), (sh, sw) = grid, (grid[0] // 4, grid[1] // 4)
    rng = np.random.default_rng(4)
    coarse = rng.standard_normal((2, sh, sw, m.cc)).astype(np.float32)
    ref = np.zeros((2, h, w, m.cc), np.float32)
    for i in range(h):
        for j in range(w):
            y, x = np.clip(_sample_coord(i, h, sh), 0, sh - 1), np.clip(_sample_coord(j, w, sw), 0, sw - 1)
            y0, x0 = int(y), int(x)
            y1, x1 = min(y0 + 1, sh - 1), min(x0 + 1, sw - 1)
            ty, tx = y - y0, x - x0
            ref[:, i, j] = ((1 - ty) * (1 - tx) * coarse[:, y0, x0] + (1 - ty) * tx * coarse[:, y0, x1]
                            + ty * (1 - tx) * coarse[:, y1, x0] + ty * tx * coarse[:, y1, x1])
    _, co = m.sample(torch.zeros(2, h // 2, w // 2, m.cf), torch.from_numpy(coarse))
    np.testing.assert_allclose(co.numpy().reshape(2, h, w, -1), ref, rtol=0, atol=1e-5)
    up = F.interpolate(torch.from_numpy(coarse).permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                       align_corners=False)
    np.testing.assert_allclose(co.numpy().reshape(2, h, w, -1), up.permute(0, 2, 3, 1).numpy(), atol=1e-5)
    if grid == (16, 16):  # the design grid's sampling matrix
        np.testing.assert_allclose(co.numpy(), np.einsum("tk,bkc->btc", bilinear_matrix(),
                                                         coarse.reshape(2, 16, -1)), atol=1e-5)


def test_hgelu_clamp_and_position_encoding():
    x = torch.tensor([-4.0, -1.5, -0.75, 0.0, 1.0, 1.5, 3.0, 5.0])
    ref = np.minimum(x.numpy(), 3) * np.clip(x.numpy() / 3 + 0.5, 0, 1)
    np.testing.assert_allclose(ng.hgelu_clamp(x).numpy(), ref, atol=1e-7)
    assert float(ng.hgelu_clamp(torch.linspace(-5, 5, 1001)).min()) == pytest.approx(-3 / 16, abs=1e-4)
    pe = ng.position_encoding(16, 16).numpy()
    assert pe.shape == (256, 16) and (pe.sum(1) == 1).all() and pe[17].argmax() == 5  # token (1, 1)
    pe = ng.position_encoding(8, 12).numpy().reshape(8, 12, 16)
    assert pe[5, 9].argmax() == 1 * 4 + 1 and (pe.sum(-1) == 1).all()  # token (5, 9): (5 mod 4, 9 mod 4)


# ---- rate, start, optimisation ------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [16, 32, 64])
def test_rate_bookkeeping(rate):
    for storage in ("int4", "bc5"):
        cfg = recipe.config_for_rate(rate, storage=storage)
        m = build("ntc_grid", dict(cfg, hidden=8))
        assert m.bytes_per_image() * rate == 256 * 384 * 2
        assert 4 * (64 * cfg["fine_channels"] + 16 * cfg["coarse_channels"]) * rate == 16 * 256 * 384
        # The same rate on every padded grid (int4: whole 4x4 coarse texels; BC: whole 16x16 coarse blocks).
        assert m.bytes_per_image((8, 12) if storage == "int4" else (32, 48)) * rate == \
            (96 if storage == "int4" else 32 * 48) * 384 * 2
        assert m.bytes_per_image((7, 5)) == m.bytes_per_image((8, 8) if storage == "int4" else 16)
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
    base = np.einsum("tk,bkc->btc", bilinear_matrix(), fc) @ wc
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


def test_compress_reuses_an_image_already_compressed_and_nothing_else(monkeypatch):
    m = model("int4")
    x = synthetic_tokens(4, seed=9)
    calls = []
    optimise = m.optimise
    monkeypatch.setattr(m, "optimise", lambda t, steps=None: calls.append(len(t)) or optimise(t, steps))
    fine, coarse = m.compress(x, steps=5)
    assert calls == [4]
    again = m.compress(np.concatenate([x[2:3], synthetic_tokens(1, seed=10), x[:1]]), steps=5)
    assert calls == [4, 1]  # only the new image is optimised
    np.testing.assert_array_equal(again[0][[0, 2]], fine[[2, 0]])
    np.testing.assert_array_equal(again[1][[0, 2]], coarse[[2, 0]])
    # Alone it gets what it got in its batch (per-image optimisation): the kept result is the one it would get.
    m._compressed.clear()
    alone = m.compress(x[2:3], steps=5)
    np.testing.assert_array_equal(alone[0][0], fine[2])
    m.compress(x[:1], steps=6)  # other steps: optimised again
    with torch.no_grad():
        m.mlp_out.bias.add_(0.01)
    m.compress(x[:1], steps=5)  # other weights: optimised again
    assert calls == [4, 1, 1, 1, 1]
    monkeypatch.setattr(ng, "COMPRESSED_BYTES", fine[0].nbytes + coarse[0].nbytes)  # room for one image
    m.compress(x[1:3], steps=5)  # neither kept under these weights
    assert len(m._compressed) == 1 and calls[-1] == 2


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


@pytest.mark.parametrize("storage", ["int4", "bc5"])
def test_non_square_round_trip(storage):
    """decode(encode(t)) on 7x5 and 26x46 grids: the image's own tokens [N, h*w, D], its grid in the payload, the
    padded grid's bytes, a cosine near the 16x16 figure (the padding is edge repetition, cropped off); a 7x5 crop
    coded alone as well as inside its 16x16 image."""
    m = model(storage)

    def round_trip(x):
        grid = x.shape[1:3]
        payloads = m.encode(x, steps=5)
        decoded = m.decode(payloads)
        assert decoded.shape == (len(x), grid[0] * grid[1], 384)
        assert all(unpack(p).grid == grid and len(unpack(p).body) == m.bytes_per_image(grid) for p in payloads)
        return decoded.reshape(x.shape)

    def cosine(a, b):
        return float(F.cosine_similarity(torch.from_numpy(a), torch.from_numpy(b), dim=-1).mean())

    x = synthetic_tokens(4, seed=13).reshape(4, 16, 16, 384)
    full = round_trip(x)
    square = cosine(full, x)
    crop = np.ascontiguousarray(x[:, :7, :5])
    alone = cosine(round_trip(crop), crop)
    assert alone >= square - 0.02 and alone >= cosine(full[:, :7, :5], crop) - 0.01
    wide = synthetic_tokens(2, seed=14, grid=(26, 46)).reshape(2, 26, 46, 384)
    assert cosine(round_trip(wide), wide) >= square - 0.02
    assert square > 0.8


def test_nibble_packing_reference():
    codes = np.array([1, 15, 0, 7, 9, 3], np.int32)
    assert ng.pack_nibbles(codes) == bytes([0xF1, 0x70, 0x39])
    np.testing.assert_array_equal(ng.unpack_nibbles(ng.pack_nibbles(codes)), codes)
    assert ng.pack_nibbles(codes[:5]) == bytes([0xF1, 0x70, 0x09])  # an odd count ends on a zero nibble


def test_corrupt_payloads_raise_one_line_errors():
    m = model()
    good = m.encode(synthetic_tokens(1), steps=2)[0]
    p = unpack(good)
    cases = {
        "truncated": good[:-3],
        "bc_autoencoder": Payload("bc_autoencoder", p.fingerprint, p.grid, p.body).pack(),
        "needs": Payload("ntc_grid", p.fingerprint, p.grid, p.body[:-2]).pack(),
        "another ntc_grid model": Payload("ntc_grid", b"\1" * 8, p.grid, p.body).pack(),
        "needs 72 at a 8x8 grid": Payload("ntc_grid", p.fingerprint, (8, 8), p.body).pack(),
        "empty": Payload("ntc_grid", p.fingerprint, (0, 16), p.body).pack(),
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
    with pytest.raises(NtcError, match=r"codes must be INT32 \[B, 8, y, x\]"):
        m(codes[:, :4], coarse)
    with pytest.raises(NtcError, match="not one batch of one grid"):
        m(codes[..., :3], coarse)
    with pytest.raises(NtcError, match="0..15"):
        m(codes + 1, coarse)
    with pytest.raises(NtcError, match="int32"):
        m(codes.long(), coarse)
    with pytest.raises(NtcError, match="not a square grid"):
        m.compress(np.zeros((1, 60, 384), np.float32))
    with pytest.raises(NtcError, match="storage"):
        build("ntc_grid", dict(TINY, storage="bc7"))
    with pytest.raises(NtcError, match="do not fit bc5"):
        build("ntc_grid", dict(TINY, fine_channels=7, storage="bc5"))
    b = model("bc5")
    blocks, cblocks = b.example_inputs(1)
    assert list(blocks.shape) == [1, 4, 2, 2, 4] and list(cblocks.shape) == [1, 2, 1, 1, 4]
    profiles = b.input_profiles((1, 4, 8), ((7, 5), 16, (32, 48)))  # grids padded to whole 16x16 coarse blocks
    assert profiles["blocks"] == [[1, 4, 2, 2, 4], [4, 4, 2, 2, 4], [8, 4, 4, 6, 4]]
    assert profiles["coarse_blocks"] == [[1, 2, 1, 1, 4], [4, 2, 1, 1, 4], [8, 2, 2, 3, 4]]
    with pytest.raises(NtcError, match=r"coarse_blocks must be INT32 \[B, 2, y, x, 4\]"):
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
    unit = "" if storage == "int4" else "_blocks"
    for value, level in zip(graph.input, ("fine", "coarse")):  # one graph for every grid: height and width dims
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        assert dims[0] == "batch" and dims[2:4] == [f"{level}{unit}_y", f"{level}{unit}_x"], dims
    records = {}
    for grid in GRIDS:  # the design grid, and non-square grids padded to whole texels / blocks
        tokens = synthetic_tokens(2, seed=11, grid=grid).reshape(2, *grid, 384)
        records[grid] = {r["precision"]: r for r in validate_onnx(f"ntc_{storage}", m, paths, tokens)}[precision]
    return records


GRIDS = ((16, 16), (7, 5), (26, 46))


@pytest.mark.parametrize("storage", ["int4", "bc5"])
def test_export_fp32_validates_in_onnx_runtime(tmp_path, storage):
    for grid, record in _export_and_validate(tmp_path, storage, "fp32").items():
        assert record["rel_l2"] <= 1e-5 and record["pass"], grid


@pytest.mark.parametrize("storage", ["int4", "bc4"])
def test_export_fp16_validates_in_onnx_runtime(tmp_path, storage):
    for grid, record in _export_and_validate(tmp_path, storage, "fp16").items():
        assert record["cosine"] >= 0.9995 and record["pass"], grid
