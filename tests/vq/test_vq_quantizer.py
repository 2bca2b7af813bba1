"""ProductResidualVQ: nearest codeword and residual stages against numpy, EMA update against a numpy reference,
dead-code restarts on a toy problem, straight-through gradients, perplexity, k-means init."""

import numpy as np
import torch
from ntc_export.models.vector_quantizer import ProductResidualVQ, index_bits, perplexity
from ntc_export.train import vq as recipe


def numpy_quantize(z, books):
    """z [N, G, d], books [G, S, K, d] -> (z_hat, indices [N, G, S]) by brute-force residual search."""
    n, g, _ = z.shape
    s_count = books.shape[1]
    idx = np.zeros((n, g, s_count), np.int64)
    z_hat = np.zeros_like(z)
    for gi in range(g):
        r = z[:, gi].astype(np.float64)
        for s in range(s_count):
            d2 = ((r[:, None, :] - books[gi, s][None].astype(np.float64)) ** 2).sum(-1)
            idx[:, gi, s] = d2.argmin(-1)
            q = books[gi, s][idx[:, gi, s]]
            z_hat[:, gi] += q
            r = r - q
    return z_hat, idx


def test_quantize_and_lookup_match_numpy():
    torch.manual_seed(0)
    vq = ProductResidualVQ(groups=3, stages=2, codewords=7, dim=4)
    vq.init_codebooks(torch.randn(3, 2, 7, 4) * torch.tensor([1.0, 0.3]).reshape(1, 2, 1, 1))
    z = torch.randn(50, 3, 4)
    z_hat, idx, inputs = vq.quantize(z)
    ref_hat, ref_idx = numpy_quantize(z.numpy(), vq.codebooks.numpy())
    np.testing.assert_array_equal(idx.numpy(), ref_idx)
    np.testing.assert_allclose(z_hat.numpy(), ref_hat, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(vq.lookup(idx), z_hat)
    assert len(inputs) == 2 and index_bits(7) == 3 and index_bits(256) == 8 and index_bits(257) == 9


def test_straight_through_gradient_and_commitment():
    torch.manual_seed(2)
    vq = ProductResidualVQ(groups=2, stages=1, codewords=5, dim=3)
    z = torch.randn(10, 2, 3, requires_grad=True)
    z_q, commit, _ = vq(z)
    weights = torch.randn_like(z)
    (z_q * weights).sum().backward()
    torch.testing.assert_close(z.grad, weights)  # identity gradient through the quantiser
    z_hat, _, _ = vq.quantize(z)
    torch.testing.assert_close(z_q.detach(), z_hat)
    torch.testing.assert_close(commit, (z.detach() - z_hat).pow(2).sum(-1).mean())


def test_ema_update_matches_numpy_reference():
    torch.manual_seed(1)
    vq = ProductResidualVQ(groups=2, stages=1, codewords=4, dim=2, decay=0.9).train()
    books = torch.randn(2, 1, 4, 2)
    vq.init_codebooks(books)
    z = torch.randn(32, 2, 2)
    _, _, idx = vq(z)
    vq.apply_pending()
    a, k = 0.9, 4
    for g in range(2):
        n = np.bincount(idx[:, g, 0].numpy(), minlength=k).astype(np.float64)
        sums = np.zeros((k, 2))
        np.add.at(sums, idx[:, g, 0].numpy(), z[:, g].numpy())
        count = a * 1.0 + (1 - a) * n
        ema_sum = a * books[g, 0].numpy() + (1 - a) * sums
        smoothed = (count + 1e-5) / (count.sum() + k * 1e-5) * count.sum()
        np.testing.assert_allclose(vq.codebooks[g, 0].numpy(), ema_sum / smoothed[:, None], rtol=1e-5, atol=1e-6)


def test_ema_converges_and_dead_code_restarts():
    """Three clusters, four codewords, one of them far away and never chosen: EMA pulls the others onto the cluster
    means; the far one is restarted (to a batch vector) after `dead_after` idle steps, then takes part."""
    g = torch.Generator().manual_seed(0)
    means = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    vq = ProductResidualVQ(groups=1, stages=1, codewords=4, dim=2, decay=0.8, dead_after=5, seed=0).train()
    vq.init_codebooks(torch.tensor([[[[0.5, 0.5], [3.0, 1.0], [1.0, 3.0], [100.0, 100.0]]]]))
    restarted_at = None
    for step in range(40):
        z = means[torch.randint(0, 3, (64,), generator=g)] + 0.1 * torch.randn(64, 2, generator=g)
        vq(z[:, None])
        if vq.apply_pending()["restarted"] and restarted_at is None:
            restarted_at = step
            assert vq.codebooks[0, 0, 3].abs().max() < 10  # now a data vector, not the far codeword
    assert restarted_at == 5  # idle after steps 0..5: more than dead_after = 5 steps
    assert int(vq.restarts.sum()) >= 1
    near = torch.cdist(means, vq.codebooks[0, 0]).min(1).values
    assert near.max() < 0.2  # every cluster mean has a codeword on it
    z = means[torch.randint(0, 3, (300,), generator=g)] + 0.1 * torch.randn(300, 2, generator=g)
    _, idx, _ = vq.eval().quantize(z[:, None])
    assert float(perplexity(vq.counts(idx))[0, 0]) > 2.5  # usage spread over the clusters


def test_perplexity_formula():
    counts = torch.tensor([[5.0, 5.0, 5.0, 5.0], [0.0, 9.0, 0.0, 0.0], [1.0, 2.0, 3.0, 0.0]])
    got = perplexity(counts).numpy()
    p = counts[2].numpy() / 6
    p = p[p > 0]
    np.testing.assert_allclose(got, [4.0, 1.0, np.exp(-(p * np.log(p)).sum())], rtol=1e-6)


def test_kmeans_is_seeded_and_fits_clusters():
    g = torch.Generator().manual_seed(3)
    centers = torch.randn(2, 5, 3, generator=g) * 5
    x = centers[:, torch.randint(0, 5, (400,), generator=g)] + 0.01 * torch.randn(2, 400, 3, generator=g)
    a = recipe.kmeans(x, 5, 10, torch.Generator().manual_seed(0))
    b = recipe.kmeans(x, 5, 10, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    for gi in range(2):
        assert torch.cdist(centers[gi], a[gi]).min(1).values.max() < 0.1
