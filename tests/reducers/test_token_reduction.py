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


def test_cell_cover_matches_loops():
    for side, k in ((16, 2), (16, 3), (16, 4), (5, 2)):
        out = -(-side // k)
        want = np.zeros((out * out, side * side))
        for r in range(side):
            for c in range(side):
                want[(r // k) * out + c // k, r * side + c] = 1
        np.testing.assert_array_equal(cell_cover(side, k), want)


def test_nearest_cover_is_a_partition_by_distance():
    side, centres = 16, lattice(16, 36)
    cover = nearest_cover(side, centres)
    assert (cover.sum(0) == 1).all() and (cover[np.arange(36), centres] == 1).all()
    for p in range(side * side):
        d = [(p // side - q // side) ** 2 + (p % side - q % side) ** 2 for q in centres]
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


def test_visionzip_source_covers_what_each_token_holds():
    module = VisionZip(num_tokens=64, dominant=10, contextual=4, keys_dim=8, trace_source=True).eval()
    tokens, attention, keys = module.example_inputs(3)
    out, dominant, source = (t.numpy() for t in module(tokens, attention, keys))
    x = tokens.numpy()
    assert (source.sum(1) == 1).all()  # a partition of the grid
    np.testing.assert_array_equal(source[:, :10].argmax(2), dominant)
    targets, _ = contextual_targets(54, 4)
    for b in range(3):  # contextual token = its uniform-stride target + mean of the rest it covers
        remaining = np.setdiff1d(np.arange(64), dominant[b])
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


@pytest.mark.parametrize("family", ["visionzip", "tome"])
def test_criterion_errors_match_a_numpy_reference(family):
    g = torch.Generator().manual_seed(3)
    tokens, attention = torch.randn(2, 256, 384, generator=g), torch.rand(2, 6, 256, generator=g)
    policy = BudgetPolicy(budgets=(16, 64, 256), threshold=0.9, family=family).eval()
    thresholds = torch.tensor([0.9, 0.0])  # per image: the second image can only qualify at all 256 tokens
    errors, index = policy(tokens, thresholds, *([attention] if family == "visionzip" else []))
    x = tokens.numpy()
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


def _token_file(path, n, seed, labels=True):
    rng = np.random.default_rng(seed)
    tokens = rng.normal(size=(n, 257, 384)).astype(np.float32)
    attention = rng.random((n, 6, 256)).astype(np.float32)
    keys = rng.normal(size=(n, 257, 384)).astype(np.float32)
    y = np.arange(n) % 2 if labels else None
    if labels:  # a learnable task: class shifts every token
        tokens += (y[:, None, None] * 0.5).astype(np.float32)
    return TokenSet(tokens, (16, 16), y, {"source": "synthetic"}, attention, keys).save(path)


def test_rd_on_reducers_and_projectors(tmp_path):
    files = {name: _token_file(tmp_path / f"{name}.npz", 8, i) for i, name in enumerate(("data", "fit", "tv", "tf"))}
    save(build("visionzip", dict(dominant=13, contextual=3, keys_dim=384)), tmp_path / "vz16.pt")
    save(build("merge3x3", dict(num_classes=0)), tmp_path / "m3.pt")
    out = tmp_path / "rd.json"
    assert main(["rd", str(tmp_path / "vz16.pt"), str(tmp_path / "m3.pt"), "--data", str(files["data"]),
                 "--fit", str(files["fit"]), "--task-data", str(files["tv"]), "--task-fit", str(files["tf"]),
                 "--adaptive", "40", "--budgets", "16,64,256", "--policy-fit", str(files["fit"]),
                 "--policy-family", "visionzip",
                 "--out", str(out), "--plot", str(tmp_path / "rd.png")]) == 0
    rows = {r["model"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["vz16"]["tokens_per_image"] == 16 and rows["m3"]["tokens_per_image"] == 36
    assert rows["m3"]["readout"] and rows["vz16"]["readout"] is None
    assert {"uniform subsample 16", "average pool 36", "visionzip 64 (fixed)"} <= set(rows)
    adaptive = rows["adaptive visionzip 16/64/256"]
    assert 16 <= adaptive["tokens_per_image"] <= 256 and adaptive["saliency_r"] is not None
    mixed = rows["visionzip fixed budgets mixed to the same mean"]  # 8 images: within one image's share
    assert abs(mixed["tokens_per_image"] - adaptive["tokens_per_image"]) <= (256 - 16) / 8
    np.testing.assert_allclose(rows["vz16"]["saliency_r"], rows["visionzip 16 (fixed)"]["saliency_r"])
    assert (tmp_path / "rd.png").stat().st_size > 0


def test_rd_refuses_models_that_are_neither(tmp_path, capsys):
    save(build("budget_policy", {}), tmp_path / "policy.pt")
    data = _token_file(tmp_path / "d.npz", 2, 0)
    assert main(["rd", str(tmp_path / "policy.pt"), "--data", str(data), "--out", str(tmp_path / "o.json")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither a token-count reducer" in err[0]
