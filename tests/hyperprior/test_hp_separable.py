"""The separable transform of the hyperprior coder (4x4 token cells: a spatial basis over the 16 positions times a
channel basis over the 384 features): against the dense Kronecker product (numpy), against numpy's PCA of the tokens,
real payloads through the range coder on square and non-square grids, and the synthesis graph in ONNX Runtime."""

import numpy as np
import pytest
import torch
from hp_inputs import fit_entropy_model, low_rank_tokens
from ntc_export.backend.onnx.export import export_model
from ntc_export.evaluate.drift import layer_drift
from ntc_export.evaluate.validate import validate_onnx
from ntc_export.models import build
from ntc_export.train import hyperprior as recipe
from ntc_export.util.errors import NtcError

SEPARABLE = dict(latent=16 * 384, hyper=4, merge=4, enc_dim=0, dim=16, depth=0, heads=1, target_rate=24.0,
                 transform="separable")


@pytest.fixture(scope="module")
def train_tokens():
    return low_rank_tokens(4, seed=31, rank=6)


@pytest.fixture(scope="module")
def model(train_tokens):
    torch.manual_seed(0)
    m = build("hyperprior", SEPARABLE)
    recipe.init(m, train_tokens)
    fit_entropy_model(m, torch.from_numpy(train_tokens), steps=20)
    return m.eval()


def test_projection_is_the_kronecker_product_of_the_bases(model, train_tokens):
    cells = model.cells(torch.from_numpy(train_tokens[:1]))
    dense = np.kron(model.spatial_basis.detach().numpy().astype(np.float64),
                    model.channel_basis.detach().numpy().astype(np.float64))  # row t*D + e
    want = (cells.numpy()[0] - model.center.numpy()) @ dense.T
    with torch.no_grad():
        got = model.project(cells)[0].numpy()
        back = model.unproject(model.project(cells))
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    assert torch.allclose(back, cells, atol=1e-4)  # orthonormal bases from PCA: the transpose inverts


def test_init_bases_are_pca_of_tokens_then_of_positions(model, train_tokens):
    flat = train_tokens.reshape(-1, 384).astype(np.float64)
    evals, evecs = np.linalg.eigh(np.cov(flat.T, bias=True))
    top = evecs[:, ::-1][:, :6].T  # the six directions of the low-rank detail
    channel = model.channel_basis.detach().numpy()
    assert np.abs(np.abs(np.sum(channel[:6] * top, 1)) - 1).max() < 1e-3
    spatial = model.spatial_basis.detach().numpy()
    assert np.allclose(spatial @ spatial.T, np.eye(16), atol=1e-5)
    assert not model.channel_basis.requires_grad  # training keeps the bases (the recipe's choice)
    step = float(torch.exp(-model.log_gain[0].detach()))
    assert model.lam() == pytest.approx(recipe.balanced_lambda(train_tokens, step))


@pytest.mark.parametrize("grid", [(16, 16), (7, 5), (12, 20)])
def test_payloads_round_trip_on_any_grid(model, grid):
    tokens = low_rank_tokens(2, seed=32, rank=6, grid=grid).reshape(2, *grid, 384)
    payloads = model.encode(tokens)
    decoded = model.decode(payloads)
    latents = model.prepare_inputs(tokens)["latents"]
    assert latents.shape[2:] == tuple(-(-s // 4) for s in grid)
    with torch.no_grad():
        direct = model(torch.from_numpy(latents)).numpy()
    hp, wp = (-(-s // 4) * 4 for s in grid)
    want = direct.reshape(2, hp, wp, 384)[:, :grid[0], :grid[1]].reshape(2, -1, 384)
    assert np.array_equal(decoded, want)
    estimate = model.estimate_bytes(tokens)
    assert np.all(np.abs(np.array([len(p) for p in payloads]) - estimate) <= 0.02 * estimate + 8)
    cos = np.sum(decoded * tokens.reshape(2, -1, 384), -1) / (
        np.linalg.norm(decoded, axis=-1) * np.linalg.norm(tokens.reshape(2, -1, 384), axis=-1))
    assert cos.mean() > 0.99


def test_synthesis_graph_in_onnx_runtime(model, tmp_path):
    paths = export_model(model, tmp_path, precisions=("fp32", "fp16"), name="hps")
    tokens = low_rank_tokens(2, seed=33, rank=6, grid=(12, 20)).reshape(2, 12, 20, 384)
    records = {r["precision"]: r for r in validate_onnx("hps", model, paths, tokens)}
    assert records["fp32"]["rel_l2"] <= 1e-5 and records["fp32"]["pass"]
    assert records["fp16"]["cosine"] >= 0.9995
    # depth 0: no submodule runs in the synthesis, so there are no layers to compare (not an export error)
    assert layer_drift(model, paths["fp32"], model.prepare_inputs(tokens)) == []


def test_config_checks():
    with pytest.raises(NtcError, match="keeps every coefficient"):
        build("hyperprior", dict(SEPARABLE, latent=100))
    with pytest.raises(NtcError, match="merge 2 or 4"):
        build("hyperprior", dict(SEPARABLE, merge=3))
    with pytest.raises(NtcError, match="transform must be"):
        build("hyperprior", dict(SEPARABLE, transform="wavelet"))
    c16, c100 = recipe.config_for_rate(16), recipe.config_for_rate(100)
    assert c16["transform"] == "separable" and c16["merge"] == 4 and c16["latent"] == 16 * 384 == c100["latent"]
    assert recipe.config_for_rate(16, transform="dense")["merge"] == 2
