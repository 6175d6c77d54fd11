"""The torch renderer's compositing (engine/render.py), the trainer's and the CPU path's."""
from __future__ import annotations

import torch


def test_packed_compositing_matches_the_dense_cumulative_product():
    """The renderer composites packed samples (a float64 running sum of optical depth per ray); the image and its
    gradients are those of the textbook product of (1 - alpha) over a dense [rays, samples] grid."""
    from engine.render import _transmittance, packed_transmittance
    gen = torch.Generator().manual_seed(3)
    rays, per_ray = 300, 40
    occupied = torch.rand(rays, per_ray, generator=gen) < 0.4  # the samples that have a density
    ray_k, sample_k = occupied.nonzero(as_tuple=True)
    sigma = (torch.rand(ray_k.shape[0], generator=gen) * 30.0).requires_grad_(True)
    colour = torch.rand(ray_k.shape[0], generator=gen)
    step = 0.02

    def image(transmittance_alpha):
        t, a = transmittance_alpha
        return torch.zeros(rays).index_add(0, ray_k, t * a * colour)

    packed = image(packed_transmittance(sigma, ray_k, step))
    (g_packed,) = torch.autograd.grad(packed.square().sum(), sigma)
    t_dense, a_dense = _transmittance(sigma, torch.Size((rays, per_ray)), ray_k, sample_k, step)
    dense = image((t_dense[ray_k, sample_k], a_dense[ray_k, sample_k]))
    (g_dense,) = torch.autograd.grad(dense.square().sum(), sigma)
    assert torch.allclose(packed, dense, atol=1e-6)
    assert torch.allclose(g_packed, g_dense, atol=1e-5, rtol=1e-4)
    assert packed.min() > 0.0  # the test composites something
