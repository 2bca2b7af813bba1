"""vq training recipe: PCA start with interleaved groups, the shared loop with EMA codebooks (smoke), codebook usage
summary, checkpoint round trip (EMA state stays out of checkpoints)."""

import numpy as np
import torch
from ntc_export.evaluate.pca_reference import fit_basis
from ntc_export.models import build, load, save
from ntc_export.train import vq as recipe
from ntc_export.train.compressor import train_compressor
from vq_inputs import TINY, low_rank_tokens


def test_init_is_pca_of_cells_in_interleaved_groups():
    tokens = low_rank_tokens(6, seed=0)
    model = build("vq", dict(TINY, groups=4, latent=12))
    recipe.init(model, tokens, seed=0, kmeans_cells=1024, iters=2)
    cells = model.cells(torch.from_numpy(tokens)).numpy()
    center, directions = fit_basis(cells, max_tokens=40_000, seed=0)
    np.testing.assert_allclose(model.center.numpy(), center, rtol=1e-5, atol=1e-5)
    order = recipe.interleaved_order(12, 4)
    np.testing.assert_array_equal(order, [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11])  # group g: directions g, g+4, g+8
    np.testing.assert_allclose(np.abs(model.basis.detach().numpy()), np.abs(directions[:12][order]), atol=1e-5)
    # Codebooks start on the latents: two stages of 16 codewords leave little of a group's 3-d latent.
    z = model.latent_of_cells(torch.from_numpy(cells)).detach()
    z_hat, _ = model.quantize_cells(torch.from_numpy(cells))
    assert float((z - z_hat).pow(2).sum() / z.pow(2).sum()) < 0.1


def numpy_usage(codes: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """codes [N, G*S, h, w] -> (perplexity exp(entropy) of each codebook's index histogram, unused codewords)."""
    counts = np.stack([np.bincount(codes[:, c].ravel(), minlength=k) for c in range(codes.shape[1])])
    p = counts / counts.sum(1, keepdims=True)
    entropy = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0).sum(1)
    return np.exp(entropy), int((counts == 0).sum())


def test_train_loop_summary_and_checkpoint(tmp_path):
    tokens = low_rank_tokens(6, seed=1)
    config = dict(TINY, dead_after=3)
    result = train_compressor("vq", config, tokens, epochs=2, batch=4, lr=1e-3, seed=0, progress=False)
    model = result.module
    assert len(result.history) == 2 and all(np.isfinite(h["loss"]) for h in result.history)
    s = result.summary
    assert s["bits_per_cell"] == 4 * 2 * 4 and s["bits_per_token"] == 8
    # Usage recomputed in numpy from the codes compress writes for the same (training) tokens.
    ppl, dead = numpy_usage(model.compress(tokens), 16)
    np.testing.assert_allclose(s["perplexity_per_codebook"], ppl, rtol=0, atol=0.05 + 1e-6)  # summary rounds to 0.1
    assert s["dead_codes"] == dead and s["codewords_total"] == 4 * 2 * 16
    # k-means-started codebooks spread their use (measured min 13.7 of 16); a collapsed codebook falls far below.
    assert s["perplexity_min"] > 10 and abs(s["perplexity_mean"] - ppl.mean()) <= 0.05 + 1e-6
    path = tmp_path / "vq.pt"
    save(model, path, half=False)
    stored = torch.load(path, weights_only=True)["state_dict"]
    assert "vq.codebooks" in stored and not any(k.startswith("vq.ema") or k == "vq.idle" for k in stored)
    again = load(path)
    assert again.fingerprint() == model.fingerprint()
    np.testing.assert_array_equal(again.compress(tokens[:2]), model.compress(tokens[:2]))
    np.testing.assert_allclose(again.decode(model.encode(tokens[:2])), model.decode(model.encode(tokens[:2])))
