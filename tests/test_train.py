"""Training on our procedural scene, on the CPU: it learns, LODs are ordered, baselines run, failures are clean."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from engine.cli import main
from engine.data import load_dataset
from engine.evaluate import evaluate
from engine.field import InferenceField
from engine.grids import kmeans_grid_from_dense
from engine.train import TrainSettings, Trainer, TrainingDiverged, new_field, trainable_from_inference

TINY_VQ_MIN_PSNR = 19.0  # dB on held-out views after 400 steps (measured about 21 on the 64x64 toy scene)


@pytest.fixture(scope="module")
def trained_vq(toy_scene):
    torch.set_num_threads(1)
    train = load_dataset(toy_scene, "train")
    field = new_field(train, "vq", 4, max_level=5, base_level=2)
    trainer = Trainer(field, train, TrainSettings(steps=400, batch_rays=1024, grid_lr=0.1))
    trainer.step(400)
    return trainer


def test_tiny_vq_model_reaches_stated_psnr_and_coarse_lods_are_worse(trained_vq, toy_scene):
    test = load_dataset(toy_scene, "test")
    rows = evaluate(trained_vq.freeze(), test, lods=[0, 3], device="cpu")
    coarse, fine = rows[0]["psnr"], rows[1]["psnr"]
    assert fine >= TINY_VQ_MIN_PSNR
    assert coarse < fine - 0.5
    assert all(r["ssim"] > 0 for r in rows)


def test_frozen_vq_field_holds_indices_not_logits(trained_vq):
    field = trained_vq.freeze()
    assert field.grid_kind == "vq" and field.bits == 4
    for rows in field.levels:
        assert rows.indices.dtype == torch.int32 and rows.features is None
        assert int(rows.indices.max()) < 16


def test_trainable_from_inference_renders_the_same_and_keeps_training(trained_vq):
    frozen = trained_vq.freeze()
    again = trainable_from_inference(frozen).freeze()
    for a, b in zip(frozen.levels, again.levels):
        assert torch.equal(a.indices, b.indices)


def test_softmax_relaxed_warm_up_trains_the_logits_then_hands_over(toy_scene):
    """soft_fraction: the first steps use softmax(logits) @ codebook, the rest the straight-through argmax; both
    move the logits, and neither reads a gradient that autograd does not keep (no warning per step)."""
    import warnings
    train = load_dataset(toy_scene, "train", max_images=4)
    trainer = Trainer(new_field(train, "vq", 4, 4, 2), train,
                      TrainSettings(steps=4, batch_rays=256, soft_fraction=0.5, prune_at=()))
    before = [l.detach().clone() for l in trainer.field.grid.logits]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        trainer.step(2)  # relaxed
        relaxed = [l.detach().clone() for l in trainer.field.grid.logits]
        trainer.step(2)  # straight-through
    assert any(not torch.equal(a, b) for a, b in zip(before, relaxed))
    assert any(not torch.equal(a, b) for a, b in zip(relaxed, trainer.field.grid.logits))


def test_random_and_kmeans_baselines_run(toy_scene):
    train = load_dataset(toy_scene, "train", max_images=8)
    rand = new_field(train, "random", 3, max_level=4, base_level=2)
    stats = Trainer(rand, train, TrainSettings(steps=20, batch_rays=256)).step(20)
    assert all(torch.isfinite(torch.tensor(s["loss"])) for s in stats)
    dense_trainer = Trainer(new_field(train, "dense", None, 4, 2), train, TrainSettings(steps=20, batch_rays=256))
    dense_trainer.step(20)
    dense = dense_trainer.freeze()
    km = InferenceField(dense.scene_center, dense.scene_half_size, dense.octree, dense.base_level,
                        kmeans_grid_from_dense(dense.levels, 3), dense.corners, dense.decoder, "kmeans", dense.n_lods)
    rows = evaluate(km, load_dataset(toy_scene, "test", max_images=2), device="cpu")
    assert len(rows) == km.max_lod + 1 and all(r["psnr"] > 5 for r in rows)


def test_nan_loss_stops_with_a_clear_error_before_updating(toy_scene):
    train = load_dataset(toy_scene, "train", max_images=4)
    trainer = Trainer(new_field(train, "vq", 2, 4, 2), train, TrainSettings(steps=5, batch_rays=128))
    with torch.no_grad():
        trainer.field.decoder["w3"].fill_(float("nan"))
    before = trainer.field.grid.codebooks[0].detach().clone()
    with pytest.raises(TrainingDiverged, match="diverged at step 0"):
        trainer.step(1)
    assert torch.equal(before, trainer.field.grid.codebooks[0])


def test_a_nan_in_a_later_call_rolls_back_to_the_last_good_state(toy_scene):
    train = load_dataset(toy_scene, "train", max_images=4)
    trainer = Trainer(new_field(train, "dense", None, 4, 2), train, TrainSettings(steps=10, batch_rays=128))
    stats = trainer.step(3)
    assert [s["step"] for s in stats] == [1, 2, 3] and len(trainer.history) == 3
    good = {k: v.clone() for k, v in trainer.field.state_dict().items()}
    with torch.no_grad():
        trainer.field.decoder["w3"].fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="diverged at step 3"):
        trainer.step(2)
    assert all(torch.equal(good[k], v) for k, v in trainer.field.state_dict().items())
    assert len(trainer.history) == 3  # the bad steps are not in the history


def test_cli_train_checkpoint_resume_eval_render(toy_scene, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", str(toy_scene), "--grid", "vq", "--bits", "3", "--max-level", "4", "--steps", "60",
            "--batch", "256", "--out", str(out), "--quiet", "--device", "cpu"]
    assert main(args) == 0
    assert (out / "model.vbnf").exists() and (out / "checkpoint.pt").exists()
    assert main(args) == 2  # an existing run is not overwritten
    assert "already holds a run" in capsys.readouterr().err
    resumed = args[:-5] + ["--steps", "80"] + args[-5:] + ["--resume"]
    assert main(resumed) == 0
    assert "resuming" in capsys.readouterr().out
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 80
    report = tmp_path / "eval.json"
    assert main(["eval", str(out / "model.vbnf"), str(toy_scene), "--max-images", "2", "--device", "cpu",
                 "--json", str(report)]) == 0
    rows = json.loads(report.read_text())
    assert [r["lod"] for r in rows] == [0, 1, 2]
    png = tmp_path / "img.png"
    assert main(["render", str(out / "model.vbnf"), "--size", "32x24", "--out", str(png), "--device", "cpu"]) == 0
    from PIL import Image
    assert Image.open(png).size == (32, 24)
    assert main(["render", str(out / "model.vbnf"), "--size", "32x24", "--out", str(png), "--device", "cpu"]) == 2


def test_ctrl_c_saves_model_and_checkpoint(toy_scene, tmp_path, interrupt_training):
    interrupt_training(2)
    out = tmp_path / "run"
    code = main(["train", str(toy_scene), "--grid", "dense", "--max-level", "4", "--steps", "500", "--batch", "128",
                 "--out", str(out), "--quiet", "--device", "cpu"])
    assert code == 130
    assert (out / "model.vbnf").exists() and (out / "checkpoint.pt").exists()


def test_cli_reports_bad_data_in_one_line(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "r"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0]


def test_skipping_hidden_samples_leaves_image_and_gradients_nearly_unchanged(trained_vq):
    """Training evaluates with gradients only the samples a ray still sees; the image and the decoder gradient must
    stay what the full evaluation gives (to within the early-stop threshold's effect)."""
    from engine.render import render_rays
    t = trained_vq
    gen = torch.Generator().manual_seed(3)
    t.generator = gen
    origins, dirs, _, _ = t.sample_batch()
    outs, grads = [], []
    for skip in (False, True):
        t.field.zero_grad(set_to_none=True)
        lod = t.field.n_lods - 1
        out = render_rays(t.field.field_fn(lod), t.field.octree, t.field.base_level + lod, t.field.scene_center,
                          t.field.scene_half_size, t.ray_step, origins, dirs, t.background, skip_hidden=skip)
        out["rgb"].sum().backward()
        outs.append(out["rgb"].detach())
        grads.append(t.field.decoder["w0"].grad.clone())
    assert (outs[0] - outs[1]).abs().max() < 1e-3
    assert float((grads[0] - grads[1]).norm() / grads[0].norm()) < 0.02


def test_cli_rejects_an_impossible_bitwidth_in_one_line(toy_scene, tmp_path, capsys):
    code = main(["train", str(toy_scene), "--grid", "vq", "--bits", "0", "--out", str(tmp_path / "run"), "--quiet",
                 "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--bits must be between 1 and 16" in err


def test_cli_trains_with_bits_per_level_and_resumes(toy_scene, tmp_path, capsys):
    from engine.fileformat import load_model
    out = tmp_path / "run"
    args = ["train", str(toy_scene), "--grid", "vq", "--bits", "5,4,3", "--max-level", "4", "--steps", "6",
            "--batch", "256", "--out", str(out), "--quiet", "--device", "cpu"]
    assert main(args) == 0
    field = load_model(out / "model.vbnf")
    assert field.level_bits == [5, 4, 3] and field.bits == 3  # the finest level names the model
    assert [r.codebook.shape[0] for r in field.levels] == [32, 16, 8]
    assert main(["info", str(out / "model.vbnf")]) == 0 and "5/4/3 bits" in capsys.readouterr().out
    resume = ["train", str(toy_scene), "--grid", "vq", "--steps", "8", "--out", str(out), "--quiet", "--device",
              "cpu", "--resume"]
    assert main(resume) == 0  # the checkpoint keeps the list
    assert load_model(out / "model.vbnf").level_bits == [5, 4, 3]
    code = main(["train", str(toy_scene), "--grid", "vq", "--bits", "5,4", "--max-level", "4", "--out",
                 str(tmp_path / "r2"), "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "2 bitwidths for a grid of 3 levels" in err


def test_lod_bias_moves_the_steps_to_the_finest_lod_and_a_resume_keeps_it(toy_scene, tmp_path):
    """--lod-bias 4 gives the finest LOD more of the steps than the default 2 (the --size recipe's weighting, for a
    --grid run that is judged by its whole file); a resume without the option keeps the run's own."""
    from engine.fileformat import load_model
    from engine.train import lod_probabilities
    assert float(lod_probabilities(5, 4.0)[-1]) > 0.74 > float(lod_probabilities(5, 2.0)[-1])
    out = tmp_path / "run"
    base = ["train", str(toy_scene), "--grid", "vq", "--bits", "4", "--max-level", "4", "--batch", "256", "--out",
            str(out), "--quiet", "--device", "cpu"]
    assert main(base + ["--steps", "4", "--lod-bias", "4"]) == 0
    assert load_model(out / "model.vbnf").metadata["train_settings"]["lod_bias"] == 4.0
    assert main(base + ["--steps", "6", "--resume"]) == 0
    assert load_model(out / "model.vbnf").metadata["train_settings"]["lod_bias"] == 4.0


def test_resume_keeps_the_logits_moments_and_survives_an_older_checkpoint(trained_vq, caplog):
    from engine.optim import VQLogitsAdam
    from engine.train import trainer_from_checkpoint

    def logits_optimizer(trainer):
        return next(o for o in trainer.optimizers if isinstance(o, VQLogitsAdam))
    ckpt = trained_vq.checkpoint()
    resumed = trainer_from_checkpoint(ckpt, trained_vq.dataset, "cpu")
    logits = resumed.field.grid.logits[-1]
    saved = logits_optimizer(trained_vq).state[trained_vq.field.grid.logits[-1]]["exp_avg_sq"]
    assert torch.equal(logits_optimizer(resumed).state[logits]["exp_avg_sq"], saved)
    old = dict(ckpt)
    old["optimizer"] = old.pop("optimizers")[0]  # the single-optimiser layout of earlier versions
    with caplog.at_level("WARNING", logger="vbnf.train"):
        again = trainer_from_checkpoint(old, trained_vq.dataset, "cpu")
    assert "moments restart" in caplog.text
    assert again.step_count == trained_vq.step_count
    again.step(2)  # and it trains on


def test_pruning_removes_empty_cells_and_keeps_the_image(trained_vq):
    import copy

    from engine.cameras import rays_from_pixels
    from engine.occupancy import cells_to_keep, prune_field
    from engine.render import render_field_rays
    field = copy.deepcopy(trained_vq.field)
    keep = cells_to_keep(field, trained_vq.ray_step, 0.005)
    assert 0 < int(keep.sum()) < keep.numel()  # the carved octree still holds empty cells after training
    pruned = prune_field(field, keep)
    assert pruned.octree.cells[-1].numel() == int(keep.sum())
    cams = trained_vq.dataset.cameras
    h, w = trained_vq.images.shape[1:3]
    iy, ix = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    origins, dirs = rays_from_pixels(cams, torch.zeros(h * w, dtype=torch.long), ix.reshape(-1) + 0.5,
                                     iy.reshape(-1) + 0.5)
    bg = torch.ones(3)
    before = render_field_rays(field.freeze(), field.n_lods - 1, origins, dirs, bg)["rgb"]
    after = render_field_rays(pruned.freeze(), field.n_lods - 1, origins, dirs, bg)["rgb"]
    assert torch.mean((before - after) ** 2) < 1e-4  # > 40 dB: only what was invisible went


def test_a_prune_that_removes_nothing_keeps_the_optimisers_moments(toy_scene):
    train = load_dataset(toy_scene, "train")
    settings = TrainSettings(steps=10, batch_rays=256, grid_lr=0.1, prune_at=(0.5,), prune_alpha=0.0)
    trainer = Trainer(new_field(train, "vq", 3, max_level=4, base_level=2), train, settings)
    trainer.step(5)
    logit_optimizer = trainer.optimizers[-1]
    trainer.step(1)  # prunes first: alpha >= 0 keeps every cell
    assert trainer.optimizers[-1] is logit_optimizer and len(logit_optimizer.state) > 0


def test_a_broken_checkpoint_is_one_line_and_the_model_survives(toy_scene, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", str(toy_scene), "--grid", "vq", "--bits", "3", "--max-level", "4", "--steps", "20",
            "--batch", "256", "--out", str(out), "--quiet", "--device", "cpu"]
    assert main(args) == 0
    model = (out / "model.vbnf").read_bytes()
    ckpt = out / "checkpoint.pt"
    good = ckpt.read_bytes()
    for broken in (good[: len(good) // 3], b"not a checkpoint", None):
        if broken is None:
            torch.save({"step": 3}, ckpt)  # a torch file, but not ours
        else:
            ckpt.write_bytes(broken)
        capsys.readouterr()
        assert main(args + ["--resume"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"vbnf train: error: {ckpt}") and "\n" not in err and "Traceback" not in err
    assert (out / "model.vbnf").read_bytes() == model


def test_a_model_records_its_data_set_resolved_so_it_opens_from_any_folder(toy_scene, monkeypatch):
    monkeypatch.chdir(toy_scene.parent)
    train = load_dataset(toy_scene.name, "train", max_images=2)
    trainer = Trainer(new_field(train, "dense", None, 3, 2), train, TrainSettings(steps=1, batch_rays=64))
    stored = trainer.freeze().metadata["dataset"]
    assert stored == str(toy_scene.resolve())


def test_random_background_targets_are_the_pixels_recomposited_on_each_rays_colour(toy_scene):
    train = load_dataset(toy_scene, "train")
    settings = TrainSettings(steps=10, batch_rays=2048, random_background=True)
    trainer = Trainer(new_field(train, "dense", None, max_level=4, base_level=2), train, settings)
    gen = trainer.generator.get_state()
    origins, dirs, target, background = trainer.sample_batch()
    trainer.generator.set_state(gen)  # the same pixels again, read from the images and masks directly
    n, h, w, _ = train.images.shape
    cam, ix, iy = (torch.randint(m, (2048,), generator=trainer.generator) for m in (n, w, h))
    alpha = train.alphas[cam, iy, ix][:, None]
    white = torch.ones(3)
    colour = (train.images[cam, iy, ix] - (1 - alpha) * white) / alpha.clamp_min(1e-6)  # un-composite
    expected = torch.where(alpha > 0, colour * alpha, torch.zeros(())) + (1 - alpha) * background
    assert background.shape == (2048, 3) and background.std() > 0.2  # a colour per ray
    assert torch.allclose(target, expected, atol=2e-2)
    assert (alpha < 1).any() and (alpha == 1).any()


def test_random_background_keeps_empty_space_transparent(toy_scene):
    """A model trained on random backgrounds renders its object on another background colour (black here) better
    than one trained on the data set's white, which may paint empty space white."""
    train, val = load_dataset(toy_scene, "train"), load_dataset(toy_scene, "val")
    black = replace(val, background=(0.0, 0.0, 0.0),
                    images=val.images - (1 - val.alphas[..., None]) * torch.ones(3))
    psnr = {}
    for random_background in (False, True):
        torch.manual_seed(0)
        field = new_field(train, "dense", None, max_level=4, base_level=2)
        settings = TrainSettings(steps=300, batch_rays=1024, grid_lr=0.1, random_background=random_background)
        trainer = Trainer(field, train, settings)
        trainer.step(300)
        psnr[random_background] = evaluate(trainer.freeze(), black, lods=[2], device="cpu")[0]["psnr"]
    assert psnr[True] > psnr[False] + 0.5, psnr


def test_cli_random_background_is_recorded_with_the_model(toy_scene, tmp_path):
    from engine.fileformat import load_model
    out = tmp_path / "run"
    assert main(["train", str(toy_scene), "--grid", "dense", "--max-level", "3", "--steps", "4", "--batch", "256",
                 "--out", str(out), "--quiet", "--device", "cpu", "--random-background"]) == 0
    assert load_model(out / "model.vbnf").metadata["train_settings"]["random_background"] is True


def test_cli_random_background_without_masks_says_so_once(toy_scene, tmp_path, capsys, monkeypatch):
    import engine.train_cli as train_cli
    real = train_cli.load_dataset
    monkeypatch.setattr(train_cli, "load_dataset", lambda *a, **k: replace(real(*a, **k), alphas=None))
    assert main(["train", str(toy_scene), "--size", "60KB", "--max-level", "3", "--steps", "4", "--batch", "256",
                 "--out", str(tmp_path / "run"), "--quiet", "--device", "cpu", "--random-background"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "--random-background" in line]
    assert len(warnings) == 1 and "alpha masks" in warnings[0]


@pytest.mark.parametrize("name, value", [
    ("lod_bias", 1e308), ("lod_bias", -2.0), ("lod_bias", float("nan")), ("lod_bias", 0), ("seed", 1e300),
    ("seed", float("nan")), ("seed", -5), ("logit_beta1", 5.0), ("lr", float("inf")), ("lr", -1.0),
    ("codebook_lr", True), ("grid_lr", 1e30), ("lr_final_ratio", float("nan")), ("optimizer", "sgd"),
])
def test_a_models_stored_settings_out_of_range_fall_back_to_the_defaults(trained_vq, name, value):
    """Continuing a model's training (the viewer's live training, `vbnf convert --finetune`) takes the settings
    stored in its file; a hostile file's out-of-range ones (an overflowing LOD weight, a NaN seed, a beta above 1)
    fall back to the defaults instead of crashing or diverging the run."""
    from engine.train import continuation_settings, trainable_from_inference
    field = trained_vq.freeze()
    field.metadata["train_settings"] = {**field.metadata["train_settings"], name: value}
    settings = continuation_settings(field, steps=2, batch_rays=256)
    defaults = TrainSettings()
    assert settings.lod_bias == trained_vq.settings.lod_bias if name != "lod_bias" else defaults.lod_bias
    assert 0 <= settings.logit_beta1 < 1 and math.isfinite(settings.lr) and settings.lr > 0
    trainer = Trainer(trainable_from_inference(field), trained_vq.dataset, settings)
    stats = trainer.step(2)
    assert all(math.isfinite(s["loss"]) for s in stats)
