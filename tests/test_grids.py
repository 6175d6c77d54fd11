"""The VQ straight-through estimator and the grid kinds."""
import torch

from engine.grids import FeatureGrid, kmeans_grid_from_dense, LevelRows, vq_lookup, vq_lookup_explicit
from engine.quantize import kmeans


def test_ste_gradient_equals_explicit_one_hot_softmax_form():
    for bits in (1, 3, 6):
        logits = torch.randn(50, 1 << bits, dtype=torch.float64, requires_grad=True)
        codebook = torch.randn(1 << bits, 8, dtype=torch.float64, requires_grad=True)
        upstream = torch.randn(50, 8, dtype=torch.float64)
        upstream[::7] = 0  # corners no sample touched
        out = vq_lookup(logits, codebook)
        g_logits, g_code = torch.autograd.grad((out * upstream).sum(), (logits, codebook))
        ref = vq_lookup_explicit(logits, codebook)
        r_logits, r_code = torch.autograd.grad((ref * upstream).sum(), (logits, codebook))
        assert torch.allclose(out, ref)
        assert g_logits.is_sparse  # only the corners that received a gradient
        assert set(g_logits.coalesce().indices()[0].tolist()) == set(upstream.any(1).nonzero()[:, 0].tolist())
        assert torch.allclose(g_logits.to_dense(), r_logits, atol=1e-12)
        assert torch.allclose(g_code, r_code, atol=1e-12)


def test_reinmax_gradient_equals_its_explicit_form():
    logits = torch.randn(40, 16, dtype=torch.float64, requires_grad=True)
    codebook = torch.randn(16, 8, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(40, 8, dtype=torch.float64)
    upstream[::5] = 0
    g = torch.autograd.grad((vq_lookup(logits, codebook, "reinmax") * upstream).sum(), (logits, codebook))
    r = torch.autograd.grad((vq_lookup_explicit(logits, codebook, "reinmax") * upstream).sum(), (logits, codebook))
    assert torch.allclose(g[0].to_dense(), r[0], atol=1e-12)
    assert torch.allclose(g[1], r[1], atol=1e-12)


def test_vq_forward_uses_the_argmax_row():
    grid = FeatureGrid("vq", [30, 40], feature_dim=4, bits=3)
    feats = grid.corner_features(1)
    assert torch.equal(feats, grid.codebooks[1][grid.logits[1].argmax(1)])
    rows = grid.export_level(1)
    assert rows.indices.dtype == torch.int32 and torch.equal(rows.table(), feats.detach())


def test_random_grid_keeps_its_indices_and_learns_its_codebook():
    grid = FeatureGrid("random", [100], feature_dim=4, bits=4)
    before = grid.indices(0).clone()
    grid.corner_features(0).sum().backward()
    assert grid.codebooks[0].grad.abs().sum() > 0
    assert torch.equal(before, grid.indices(0))


def test_kmeans_baseline_quantises_dense_features():
    centres = torch.randn(16, 4) * 3
    feats = centres[torch.randint(16, (2000,))] + 0.01 * torch.randn(2000, 4)
    (rows,) = kmeans_grid_from_dense([LevelRows(features=feats)], bits=4)
    assert rows.codebook.shape == (16, 4) and int(rows.indices.max()) < 16
    assert torch.mean((rows.table() - feats) ** 2) < 1e-3  # the 16 clusters are recovered


def test_weighted_kmeans_handles_fewer_points_than_centroids():
    pts = torch.randn(5, 3)
    cent, assign = kmeans(pts, 8)
    assert torch.equal(cent[assign], pts)
