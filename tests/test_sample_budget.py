"""Sample budgets (engine/sample_budget.py): a training step that packs its samples into fixed-size arrays (no host
synchronisation on CUDA) renders, trains and learns exactly what exact compaction does; an array too small leaves
the rays it cut out of the loss."""
from __future__ import annotations

import pytest
import torch

from engine.data import load_dataset
from engine.render import max_samples_per_ray, render_rays
from engine.sample_budget import ROUND_TO, SampleBudgets
from engine.train import TrainSettings, Trainer, new_field


@pytest.fixture(scope="module")
def setup(toy_scene):
    train = load_dataset(toy_scene, "train", max_images=8)
    torch.manual_seed(0)
    trainer = Trainer(new_field(train, "vq", 4, max_level=5, base_level=2), train,
                      TrainSettings(steps=60, batch_rays=512, grid_lr=0.1))
    trainer.step(60)  # a field with some density, so that the hidden-sample pass removes samples
    origins, dirs, _, _ = trainer.sample_batch()
    trainer.test_batch = (origins, dirs, torch.rand(origins.shape[0]))  # one batch for every render of a test
    return trainer


def _render(trainer, lod, sizes, count=True):
    origins, dirs, offsets = trainer.test_batch
    f = trainer.field
    return render_rays(f.field_fn(lod), f.octree, f.base_level + lod, f.scene_center, f.scene_half_size,
                       trainer.ray_step, origins, dirs, trainer.background, offsets=offsets, skip_hidden=True,
                       max_samples=max_samples_per_ray(f.scene_half_size, trainer.ray_step), sample_sizes=sizes,
                       count_samples=count)


@pytest.mark.parametrize("lod", [1, 3])
def test_fixed_size_arrays_render_what_exact_compaction_renders(setup, lod):
    exact = _render(setup, lod, None)
    counts = exact["sample_counts"].tolist()
    assert counts[0] > counts[1] >= counts[2] > 0, counts  # inside > occupied >= visible
    padded = _render(setup, lod, tuple(c + 777 for c in counts))
    assert padded["sample_counts"].tolist() == counts
    assert bool(padded["complete"].all())
    assert torch.allclose(padded["rgb"], exact["rgb"], atol=1e-6)
    assert torch.allclose(padded["opacity"], exact["opacity"], atol=1e-6)


def test_the_padding_takes_no_gradient(setup):
    field = setup.field
    grads = []
    for sizes in (None, "padded"):
        counts = _render(setup, 3, None)["sample_counts"].tolist()
        out = _render(setup, 3, None if sizes is None else tuple(c + 500 for c in counts), count=False)
        field.zero_grad(set_to_none=True)
        out["rgb"].square().sum().backward()
        grads.append([p.grad.clone() for p in field.decoder.values()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_an_array_too_small_leaves_the_rays_it_cut_out(setup, stage):
    exact = _render(setup, 3, None)
    counts = exact["sample_counts"].tolist()
    sizes = [c + 100 for c in counts]
    sizes[stage] = counts[stage] // 2  # half the samples of this compaction do not fit
    padded = _render(setup, 3, tuple(sizes))
    complete = padded["complete"]
    n = int(complete.sum())
    assert 0 < n < complete.numel()
    assert bool(complete[:n].all()) and not bool(complete[n:].any())  # the cut rays are the last ones
    assert torch.allclose(padded["rgb"][complete], exact["rgb"][complete], atol=1e-6)


def test_sizes_follow_the_counts():
    budgets = SampleBudgets()
    assert budgets.sizes(2) is None  # not measured: exact compaction once
    budgets.update(2, [100_000, 40_000, 9_000], overflowed=False)
    sizes = budgets.sizes(2)
    assert all(s >= 1.1 * c and s % ROUND_TO == 0 for s, c in zip(sizes, [100_000, 40_000, 9_000]))
    budgets.update(2, [100_400, 40_100, 9_050], overflowed=False)
    assert budgets.sizes(2) == sizes  # a small drift keeps the shapes
    budgets.update(2, [150_000, 40_000, 9_000], overflowed=True)
    assert budgets.sizes(2)[0] >= 1.3 * 150_000
    budgets.update(2, [50_000, 20_000, 4_000], overflowed=False)  # after a prune
    assert budgets.sizes(2)[0] < 100_000
    budgets.reset()
    assert budgets.sizes(2) is None


@pytest.mark.parametrize("kind", ["dense", "vq"])
def test_training_with_sample_budgets_equals_exact_training(toy_scene, kind):
    """At equal steps and seed a run with fixed-size sample arrays (what CUDA runs) takes the steps of exact
    compaction (what the CPU runs), up to float rounding: a dense model ends within 0.01 dB on the val views. A vq
    model takes the same steps until rounding flips an index, after which the runs drift apart as two seeds do (on
    this scene, six seeds each: 18.99 dB exact, 18.95 with budgets, 2026-12-03), so its first steps are compared."""
    from engine.evaluate import evaluate
    train = load_dataset(toy_scene, "train", max_images=8)
    val = load_dataset(toy_scene, "val")
    histories, psnr = [], []
    for budgets in (None, SampleBudgets()):
        torch.manual_seed(0)
        bits = 4 if kind == "vq" else None
        trainer = Trainer(new_field(train, kind, bits, max_level=5, base_level=2), train,
                          TrainSettings(steps=150, batch_rays=512, grid_lr=0.1, prune_at=(0.3,)))
        trainer.sample_budgets = budgets
        for _ in range(15):
            trainer.step(10)
        histories.append([r["loss"] for r in trainer.history])
        field = trainer.freeze()
        psnr.append(evaluate(field, val, lods=[field.max_lod], device="cpu")[0]["psnr"])
        if budgets is not None:
            assert budgets.sizes(trainer.history[-1]["lod"]) is not None  # measured, then used
    if kind == "dense":
        assert abs(psnr[0] - psnr[1]) <= 0.01, psnr
    assert histories[0][:15] == pytest.approx(histories[1][:15], rel=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_training_step_never_waits_for_the_device(toy_scene):
    """Once each LOD's sizes are measured, a CUDA step (vq: fused lookup, vq_adam) runs without a host
    synchronisation; the loss read at the end of `step(n)` is the only one."""
    train = load_dataset(toy_scene, "train", max_images=8)
    trainer = Trainer(new_field(train, "vq", 4, max_level=5, base_level=2), train,
                      TrainSettings(steps=1000, batch_rays=2048, grid_lr=0.1), "cuda")
    assert trainer.sample_budgets is not None
    trainer.lod_p = torch.zeros_like(trainer.lod_p)
    trainer.lod_p[-1] = 1.0  # one LOD, whose sizes the first call measures
    trainer.step(5)
    read = trainer._read_losses
    trainer._read_losses = lambda: None  # the one synchronisation per call, left out of the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.step(5)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        trainer._read_losses = read
    trainer._read_losses()
    assert len(trainer.history) == 10 and all(r["loss"] > 0 for r in trainer.history)
