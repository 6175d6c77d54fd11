"""The fused training lookup (grid_features, engine/cuda/grid_features.cu) against its torch twin grid_features_torch
(`descend` + `feature_from_cells`): values and table gradients. The .cu file is built as C++ on the CPU (runs in CI)
and through NVRTC on a GPU (skipped without one)."""
from __future__ import annotations

import ctypes
import math

import pytest
import torch

from engine.cuda.grid_features import SOURCE_PATH, FeatureParams, feature_params, grid_features_torch
from engine.cuda.toolchain import cuda_unavailable_reason
from engine.octree import cell_corners
from tests.fields import sphere_shell_octree
from tests.host_build import assert_layout_matches, cxx, host_library

BASE, MAX_LEVEL, FEAT = 2, 5, 16


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory) -> ctypes.CDLL:
    if cxx() is None:
        pytest.skip("no C++ compiler for the host build of grid_features.cu")
    return host_library(SOURCE_PATH, [f"-DFEAT={FEAT}"], tmp_path_factory.mktemp("grid_features"))


def problem(seed: int, n_points: int = 3000, device: str = "cpu"):
    """A shell octree, its corner tables, random features, and points of which most lie in occupied cells."""
    gen = torch.Generator().manual_seed(seed)
    octree = sphere_shell_octree(MAX_LEVEL)
    corners = [cell_corners(octree, BASE + k)[1] for k in range(MAX_LEVEL - BASE + 1)]
    tables = [torch.randn(int(c.max()) + 1, FEAT, generator=gen) for c in corners]
    # points near the shell (occupied) plus uniform ones (some in empty cells: cell 0 is used there, as in descend)
    d = torch.nn.functional.normalize(torch.randn(n_points, 3, generator=gen), dim=1)
    shell = 0.5 + d * (0.3 + 0.02 * torch.randn(n_points, 1, generator=gen))
    points = torch.cat([shell, torch.rand(n_points // 4, 3, generator=gen)]).clamp(0, 1)
    points[0] = torch.tensor([1.0, 1.0, 1.0])  # the clamp at the cube's far faces
    to = (lambda t: t.to(device))
    return octree.to(device), [to(c) for c in corners], [to(t) for t in tables], to(points)


def reference(octree, corners, tables, points, lod, grad_out=None):
    tables = [t.clone().requires_grad_(True) for t in tables]
    out = grid_features_torch(points, octree, corners, tables, BASE, lod)
    grads = None
    if grad_out is not None:
        out.backward(grad_out)
        grads = [t.grad for t in tables[: lod + 1]]
    return out.detach(), grads


def test_params_layout_matches_the_kernel_struct(host_lib):
    assert_layout_matches(host_lib.feature_params_layout, FeatureParams)


@pytest.mark.parametrize("lod", [0, 1, 3])
def test_host_build_equals_the_torch_lookup_and_its_gradient(host_lib, lod):
    octree, corners, tables, points = problem(seed=lod)
    grad_out = torch.randn(points.shape[0], FEAT)
    want, want_grads = reference(octree, corners, tables, points, lod, grad_out)

    params = feature_params(points, octree, corners, BASE, lod)
    for k in range(lod + 1):
        params.tables[k] = tables[k].data_ptr()
    out = torch.full((points.shape[0], FEAT), float("nan"))
    params.out = out.data_ptr()
    host_lib.grid_features_forward_host(ctypes.byref(params))
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)

    grads = [torch.zeros_like(t) for t in tables[: lod + 1]]
    for k, g in enumerate(grads):
        params.grad_tables[k] = g.data_ptr()
    params.grad_out = grad_out.data_ptr()
    host_lib.grid_features_backward_host(ctypes.byref(params))
    for g, w in zip(grads, want_grads):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)


needs_cuda = pytest.mark.skipif(cuda_unavailable_reason() is not None, reason=f"{cuda_unavailable_reason()}")


@needs_cuda
@pytest.mark.parametrize("lod", [0, 3])
def test_cuda_kernel_equals_the_torch_lookup_and_its_gradient(lod):
    from engine.cuda.grid_features import grid_features
    octree, corners, tables, points = problem(seed=10 + lod, n_points=20000, device="cuda")
    grad_out = torch.randn(points.shape[0], FEAT, device="cuda")
    want, want_grads = reference(octree, corners, tables, points, lod, grad_out)
    leaves = [t.clone().requires_grad_(True) for t in tables]
    out = grid_features(points, octree, corners, leaves, BASE, lod)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    out.backward(grad_out)
    for k in range(lod + 1):
        torch.testing.assert_close(leaves[k].grad, want_grads[k], atol=1e-4, rtol=1e-4)
    assert all(t.grad is None for t in leaves[lod + 1:])


def test_a_field_given_a_lookup_finds_its_own_cells_and_renders_the_same_image():
    """The trainer hands NeuralField.field_fn the fused lookup on CUDA; any lookup with grid_features' arguments
    (here its torch twin) must render what the field's own torch lookup renders, gradients included."""
    from engine.field import NeuralField
    from engine.render import render_rays
    field = NeuralField(sphere_shell_octree(MAX_LEVEL), BASE, "dense", feature_dim=8, seed=1)
    with torch.no_grad():
        for p in field.grid.features:
            p.normal_()
        field.decoder["b1"][0] = 3.0
    gen = torch.Generator().manual_seed(2)
    origins = torch.tensor([0.0, 0.0, 3.0]) + 0.3 * torch.randn(64, 3, generator=gen)
    dirs = torch.nn.functional.normalize(torch.tensor([0.0, 0.0, -1.0]) + 0.2 * torch.randn(64, 3, generator=gen),
                                         dim=1)
    lod = 2
    images, grads = [], []
    for lookup in (None, grid_features_torch):
        field.zero_grad(set_to_none=True)
        fn = field.field_fn(lod, lookup)
        assert getattr(fn, "needs_cells", True) == (lookup is None)
        out = render_rays(fn, field.octree, BASE + lod, field.scene_center, field.scene_half_size, 0.02, origins,
                          dirs, torch.ones(3))
        out["rgb"].sum().backward()
        images.append(out["rgb"].detach())
        grads.append(field.grid.features[lod].grad.clone())
    assert float(images[0].std()) > 0.01  # the shell is visible: the comparison means something
    torch.testing.assert_close(images[1], images[0])
    torch.testing.assert_close(grads[1], grads[0])


@needs_cuda
def test_the_trainer_on_cuda_hands_the_field_the_fused_lookup_and_its_first_loss_is_torchs(toy_scene):
    """On CUDA the trainer passes grid_features to the field (engine/train.py): its first step sees the loss the torch
    lookup gives on the same batch (up to float summation order), and training goes on."""
    from engine.data import load_dataset
    from engine.train import TrainSettings, Trainer, new_field
    train = load_dataset(toy_scene, "train", max_images=4)
    losses = []
    for fused in (True, False):
        trainer = Trainer(new_field(train, "vq", 4, 4, 2), train, TrainSettings(steps=4, batch_rays=512, prune_at=()),
                          device="cuda")
        assert trainer.fused  # chosen by the trainer: CUDA and NVRTC are here
        trainer.fused = fused
        losses.append([s["loss"] for s in trainer.step(4)])
    assert all(math.isfinite(x) for x in losses[0])
    assert losses[0][0] == pytest.approx(losses[1][0], rel=1e-4)
