"""The VQ straight-through estimator and the grid kinds."""
import torch

import pytest

from engine.grids import FeatureGrid, kmeans_grid_from_dense, LevelRows, ste_gradient, vq_lookup_explicit
from engine.quantize import kmeans


def _explicit_gradients(logits, codebook, upstream, estimator):
    logits = logits.detach().requires_grad_(True)
    codebook = codebook.detach().requires_grad_(True)
    out = vq_lookup_explicit(logits, codebook, estimator)
    return torch.autograd.grad((out * upstream).sum(), (logits, codebook))


@pytest.mark.parametrize("estimator", ["ste", "reinmax"])
def test_ste_gradient_equals_explicit_one_hot_softmax_form(estimator):
    for bits in (1, 3, 6):
        logits = torch.randn(50, 1 << bits, dtype=torch.float64)
        codebook = torch.randn(1 << bits, 8, dtype=torch.float64)
        upstream = torch.randn(50, 8, dtype=torch.float64)
        upstream[::7] = 0  # corners no sample touched
        rows, values = ste_gradient(logits, codebook, upstream, estimator, chunk_elements=64)  # several chunks
        r_logits, _ = _explicit_gradients(logits, codebook, upstream, estimator)
        assert rows.tolist() == upstream.any(1).nonzero()[:, 0].tolist()  # only the corners that got a gradient
        assert torch.allclose(values, r_logits[rows], atol=1e-12)
        assert torch.count_nonzero(r_logits[~upstream.any(1)]) == 0


def test_vq_forward_uses_the_argmax_row_and_backward_reaches_the_codebook_only():
    grid = FeatureGrid("vq", [30, 40], feature_dim=4, bits=3)
    feats = grid.corner_features(1)
    assert torch.equal(feats, grid.codebooks[1][grid.logits[1].argmax(1)])
    rows = grid.export_level(1)
    assert rows.indices.dtype == torch.int32 and torch.equal(rows.table(), feats.detach())
    upstream = torch.randn(40, 4)
    (feats * upstream).sum().backward()
    assert grid.logits[1].grad is None  # the logits' gradient is VQLogitsAdam's to compute (ste_gradient)
    _, r_code = _explicit_gradients(grid.logits[1], grid.codebooks[1], upstream, "ste")
    torch.testing.assert_close(grid.codebooks[1].grad, r_code)


def test_bits_per_level():
    grid = FeatureGrid("vq", [30, 40, 50], feature_dim=4, bits=(8, 6, 4))
    assert [c.shape[0] for c in grid.codebooks] == [256, 64, 16]
    assert [lg.shape[1] for lg in grid.logits] == [256, 64, 16]
    assert grid.bits == (8, 6, 4) and [grid.export_level(k).bits for k in range(3)] == [8, 6, 4]
    assert FeatureGrid("random", [30, 40], 4, bits=(5, 5)).bits == 5  # the same b everywhere is a plain int
    for bad in ((6, 6), (6, 0, 6), 17):
        with pytest.raises(ValueError, match="--bits"):
            FeatureGrid("vq", [30, 40, 50], feature_dim=4, bits=bad)


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

