"""Token-reduction table: covers and scatter-back against loop references, the ridge readout, VisionZip's traced
source, the adaptive policy's threshold and criterion graph, and `ntc-export rd` on reducers/projectors."""

import json

import numpy as np
import pytest
import torch
from ntc_export.cli import main
from ntc_export.data.tokens import TokenSet
from ntc_export.evaluate.adaptive_budget import fit_threshold, pick, same_mean_mix
from ntc_export.evaluate.token_reduction import Readout, cell_cover, lattice, nearest_cover, scatter_back
from ntc_export.models import build, save
from ntc_export.models.budget_policy import BudgetPolicy
from ntc_export.models.visionzip import VisionZip, contextual_targets
from ntc_export.util.errors import NtcError


def test_cell_cover_matches_loops():
    for (h, w), k in (((16, 16), 2), ((16, 16), 3), ((16, 16), 4), ((5, 5), 2), ((13, 21), 2), ((7, 10), 3),
                      ((9, 4), 4)):
        cols = -(-w // k)
        want = np.zeros((-(-h // k) * cols, h * w))
        for r in range(h):
            for c in range(w):
                want[(r // k) * cols + c // k, r * w + c] = 1
        np.testing.assert_array_equal(cell_cover((h, w), k), want)
    np.testing.assert_array_equal(cell_cover(16, 2), cell_cover((16, 16), 2))  # a side: the square grid


@pytest.mark.parametrize("grid,count", [((16, 16), 36), ((13, 21), 40)])
def test_nearest_cover_is_a_partition_by_distance(grid, count):
    (h, w), centres = grid, lattice(grid, count)
    assert len(set(centres.tolist())) == count and centres.max() < h * w
    cover = nearest_cover(grid, centres)
    assert (cover.sum(0) == 1).all() and (cover[np.arange(count), centres] == 1).all()
    for p in range(h * w):
        d = [(p // w - q // w) ** 2 + (p % w - q % w) ** 2 for q in centres]
        assert cover[int(np.argmin(d)), p] == 1


def test_scatter_back_matches_loops():
    rng = np.random.default_rng(0)
    out, cover = rng.normal(size=(3, 5, 4)), (rng.random((3, 5, 9)) < 0.3).astype(np.float32)
    want = np.zeros((3, 9, 4))
    for b in range(3):
        for p in range(9):
            hits = [out[b, i] for i in range(5) if cover[b, i, p]]
            want[b, p] = np.mean(hits, 0) if hits else 0
    np.testing.assert_allclose(scatter_back(out, cover), want, atol=1e-6)


def test_readout_recovers_a_linear_map():
    rng = np.random.default_rng(1)
    x, w, b = rng.normal(size=(400, 6)), rng.normal(size=(6, 3)), rng.normal(size=3)
    fit = Readout.fit(x, x @ w + b, alpha=1e-9)
    np.testing.assert_allclose(fit.weight, w, atol=1e-5)
    np.testing.assert_allclose(fit.bias, b, atol=1e-5)


@pytest.mark.parametrize("grid", [(8, 8), (7, 10)])
def test_visionzip_source_covers_what_each_token_holds(grid):
    module = VisionZip(num_tokens=64, dominant=10, contextual=4, keys_dim=8, trace_source=True).eval()
    tokens, attention, keys = module.example_inputs(3, grid)
    out, dominant, source = (t.numpy() for t in module(tokens, attention, keys))
    n = grid[0] * grid[1]
    x = tokens.numpy().reshape(3, n, -1)
    assert source.shape == (3, 14, n) and (source.sum(1) == 1).all()  # a partition of the grid
    np.testing.assert_array_equal(source[:, :10].argmax(2), dominant)
    targets = contextual_targets(n - 10, 4)[0].numpy()
    np.testing.assert_array_equal(targets, np.arange(0, n - 10, (n - 10) // 4)[:4])  # the official uniform stride
    for b in range(3):  # contextual token = its uniform-stride target + mean of the rest it covers
        remaining = np.setdiff1d(np.arange(n), dominant[b])
        for j in range(10, 14):
            target = remaining[targets[j - 10]]
            assert source[b, j, target] == 1
            rest = [p for p in np.flatnonzero(source[b, j]) if p != target]
            want = x[b, target] + (x[b, rest].mean(0) if rest else 0)
            np.testing.assert_allclose(out[b, j], want, atol=1e-5)
    plain = VisionZip(num_tokens=64, dominant=10, contextual=4, keys_dim=8).eval()
    np.testing.assert_array_equal(plain(tokens, attention, keys)[0].numpy(), out)


def test_fit_threshold_matches_brute_force():
    rng = np.random.default_rng(2)
    errors = np.sort(rng.random((50, 4)), axis=1)[:, ::-1].copy()
    errors[:, -1] = 0
    budgets = [16, 36, 64, 256]
    t = fit_threshold(errors, budgets, 64)

    def mean_tokens(th):
        return np.mean([budgets[next(k for k in range(4) if k == 3 or e[k] <= th)] for e in errors])

    assert mean_tokens(t) <= 64
    assert all(mean_tokens(c) > 64 for c in np.unique(errors) if c < t)


def test_pick_takes_each_images_budget():
    a = (np.ones((2, 2, 3)), np.ones((1, 2, 4)))
    b = (2 * np.ones((2, 4, 3)), np.eye(4)[None])
    out, cover = pick([a, b], np.array([1, 0]))
    assert (out[0] == 2).all() and (out[1, :2] == 1).all() and (out[1, 2:] == 0).all()
    assert cover[1, 2:].sum() == 0 and (cover[0] == np.eye(4)).all()


def test_same_mean_mix_matches_the_policys_mean_with_two_neighbouring_budgets():
    budgets = [16, 36, 64, 144, 256]
    chosen = np.random.default_rng(1).choice(5, size=1000, p=[0.3, 0.2, 0.1, 0.3, 0.1])
    mixed = same_mean_mix(budgets, chosen)
    sizes = np.asarray(budgets)
    assert abs(sizes[mixed].mean() - sizes[chosen].mean()) <= (144 - 64) / 1000
    assert set(mixed.tolist()) == {2, 3}  # the mean (86.4) lies between 64 and 144
    assert (same_mean_mix(budgets, np.full(10, 4)) == 4).all()


@pytest.mark.parametrize("family,grid", [("visionzip", (16, 16)), ("tome", (16, 16)), ("visionzip", (13, 21))])
def test_criterion_errors_match_a_numpy_reference(family, grid):
    g = torch.Generator().manual_seed(3)
    n = grid[0] * grid[1]
    tokens, attention = torch.randn(2, *grid, 384, generator=g), torch.rand(2, 6, *grid, generator=g)
    policy = BudgetPolicy(budgets=(16, 64, 256), threshold=0.9, family=family).eval()
    thresholds = torch.tensor([0.9, 0.0])  # per image: the second image can only qualify at all 256 tokens
    errors, index = policy(tokens, thresholds, *([attention] if family == "visionzip" else []))
    x = tokens.numpy().reshape(2, n, 384)
    for k, reducer in enumerate(policy.reducers):
        reducer.trace_source = True
        source = (reducer(tokens, attention) if family == "visionzip" else reducer(tokens))[-1].numpy()
        fit = np.einsum("bnp,bpd->bnd", source, x) / source.sum(2)[..., None]
        back = np.einsum("bnp,bnd->bpd", source, fit)
        want = np.linalg.norm(back - x, axis=(1, 2)) / np.linalg.norm(x - x.mean(1, keepdims=True), axis=(1, 2))
        np.testing.assert_allclose(errors[:, k].numpy(), want, rtol=1e-5)
    assert (errors[:, -1] == 0).all()
    first_ok = [next(k for k in range(3) if k == 2 or e[k] <= t) for e, t in zip(errors.numpy(), thresholds)]
    assert index.tolist() == first_ok and index[1] == 2


def test_tome_policy_takes_the_grid_of_its_schedules_only():
    policy = BudgetPolicy(budgets=(16, 64, 256), family="tome").eval()
    assert policy.input_axes() == {"tokens": {0: "batch"}, "threshold": {0: "batch"}}  # batch the only dynamic axis
    assert [tuple(t.shape) for t in policy.example_inputs(2, (13, 21))] == [(2, 16, 16, 384), (2,)]
    assert policy.input_profiles((1, 1, 8), (13, 16, 32))["tokens"] == [[1, 16, 16, 384]] * 2 + [[8, 16, 16, 384]]
    message = (r"^budget_policy needs exactly a 16x16 grid \(its ToMe budgets are \(r, steps\) schedules tabled for "
               r"256 tokens\), got a 13x21 grid \(273 tokens\)$")
    with pytest.raises(NtcError, match=message):
        policy.prepare_inputs(np.zeros((1, 13, 21, 384), np.float32))
    with pytest.raises(NtcError, match="16x16"):
        policy(torch.zeros(1, 16, 17, 384), torch.zeros(1))
    visionzip = BudgetPolicy(budgets=(16, 64, 256)).eval()  # budgets are token counts: any grid holding 64
    assert visionzip.input_axes()["attention"] == {0: "batch", 2: "grid_h", 3: "grid_w"}
    with pytest.raises(NtcError, match=r"at least 64 patch tokens .* got a 7x9 grid"):
        visionzip.prepare_inputs(np.zeros((1, 7, 9, 384), np.float32), attention=np.zeros((1, 6, 63), np.float32))


def _token_file(path, n, seed, labels=True, grid=(16, 16)):
    rng = np.random.default_rng(seed)
    count = grid[0] * grid[1]
    tokens = rng.normal(size=(n, 1 + count, 384)).astype(np.float32)
    attention = rng.random((n, 6, count)).astype(np.float32)
    keys = rng.normal(size=(n, 1 + count, 384)).astype(np.float32)
    y = np.arange(n) % 2 if labels else None
    if labels:  # a learnable task: class shifts every token
        tokens += (y[:, None, None] * 0.5).astype(np.float32)
    return TokenSet(tokens, grid, y, {"source": "synthetic"}, attention, keys).save(path)


def test_rd_on_reducers_and_projectors(tmp_path):
    """On a non-square grid of 209 tokens (11x19): covers, baselines and the policy on it, its last budget (256) all
    of the grid's tokens."""
    files = {name: _token_file(tmp_path / f"{name}.npz", 8, i, grid=(11, 19))
             for i, name in enumerate(("data", "fit", "tv", "tf"))}
    save(build("visionzip", dict(dominant=13, contextual=3, keys_dim=384)), tmp_path / "vz16.pt")
    save(build("merge3x3", dict(num_classes=0)), tmp_path / "m3.pt")
    out = tmp_path / "rd.json"
    assert main(["rd", str(tmp_path / "vz16.pt"), str(tmp_path / "m3.pt"), "--data", str(files["data"]),
                 "--fit", str(files["fit"]), "--task-data", str(files["tv"]), "--task-fit", str(files["tf"]),
                 "--adaptive", "40", "--budgets", "16,64,256", "--policy-fit", str(files["fit"]),
                 "--policy-family", "visionzip",
                 "--out", str(out), "--plot", str(tmp_path / "rd.png")]) == 0
    rows = {r["model"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["vz16"]["tokens_per_image"] == 16 and rows["m3"]["tokens_per_image"] == 4 * 7  # 3x3 cells, padded
    assert rows["m3"]["readout"] and rows["vz16"]["readout"] is None
    assert {"uniform subsample 16", "average pool 28", "visionzip 64 (fixed)"} <= set(rows)
    assert rows["visionzip 256 (fixed)"]["tokens_per_image"] == 209 and rows["visionzip 256 (fixed)"]["rel_error"] == 0
    adaptive = rows["adaptive visionzip 16/64/256"]
    assert 16 <= adaptive["tokens_per_image"] <= 209 and adaptive["saliency_r"] is not None
    mixed = rows["visionzip fixed budgets mixed to the same mean"]  # 8 images: within one image's share
    assert abs(mixed["tokens_per_image"] - adaptive["tokens_per_image"]) <= (209 - 16) / 8
    np.testing.assert_allclose(rows["vz16"]["saliency_r"], rows["visionzip 16 (fixed)"]["saliency_r"])
    assert (tmp_path / "rd.png").stat().st_size > 0


def test_rd_refuses_models_that_are_neither(tmp_path, capsys):
    save(build("budget_policy", {}), tmp_path / "policy.pt")
    data = _token_file(tmp_path / "d.npz", 2, 0)
    assert main(["rd", str(tmp_path / "policy.pt"), "--data", str(data), "--out", str(tmp_path / "o.json")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither a token-count reducer" in err[0]
