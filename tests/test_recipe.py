"""The rate-distortion recipe (engine/recipe.py) and `vbnf train --size`."""
from __future__ import annotations

import pytest
import torch

from engine.cli import main
from engine.data import load_dataset
from engine.fileformat import load_model, model_layout, save_model_bytes
from engine.recipe import Recipe, choose_bits, parse_size, train_for_budget
from engine.train import TrainSettings


@pytest.mark.parametrize("text,expected", [("500KB", 500_000), ("0.5M", 500_000), ("2MB", 2_000_000),
                                           ("120000", 120_000), ("1.5 mb", 1_500_000), ("64k", 64_000)])
def test_sizes_read_as_users_write_them(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "0", "-5KB", "1e9XB", "0.0001KB"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.fixture(scope="module")
def small_train(toy_scene):
    return load_dataset(toy_scene, "train", max_images=8)


def test_the_recipe_writes_a_file_within_its_budget(small_train):
    recipe = Recipe(budget_bytes=20_000, steps=40, max_level=4)
    tuner, recipe = train_for_budget(small_train, recipe, TrainSettings(batch_rays=256), torch.device("cpu"),
                                     chunk=10)
    field = tuner.freeze({"recipe": {}})
    assert field.grid_kind == "vq" and len(recipe.level_bits) == field.n_lods
    assert len(save_model_bytes(field)) <= 20_000
    # coarse levels never get fewer bits than finer ones; a larger budget never gets fewer bits
    assert list(recipe.level_bits) == sorted(recipe.level_bits, reverse=True) or \
        all(b >= recipe.level_bits[-1] for b in recipe.level_bits)
    assert all(a >= b for a, b in zip(choose_bits(field, 200_000), choose_bits(field, 20_000)))
    assert tuner.history and all(torch.isfinite(torch.tensor(r["loss"])) for r in tuner.history)


def test_the_vq_phase_trains_the_lods_as_the_recipe_says_and_the_model_records_it(small_train):
    recipe = Recipe(budget_bytes=20_000, steps=20, max_level=4, lod_bias=3.0)
    tuner, _ = train_for_budget(small_train, recipe, TrainSettings(batch_rays=128), torch.device("cpu"), chunk=10)
    assert tuner.freeze().metadata["train_settings"]["lod_bias"] == 3.0


def test_train_size_cli_fits_the_budget_and_info_shows_the_recipe(toy_scene, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", str(toy_scene), "--size", "25KB", "--steps", "40", "--max-level", "4", "--batch", "256",
            "--out", str(out), "--quiet", "--device", "cpu"]
    assert main(args) == 0
    model = out / "model.vbnf"
    assert model_layout(model).total_bytes <= 25_000
    field = load_model(model)
    assert field.metadata["recipe"]["budget_bytes"] == 25_000 and field.metadata["recipe"]["level_bits"]
    capsys.readouterr()
    assert main(["info", str(model)]) == 0
    assert "recipe" in capsys.readouterr().out


def test_a_budget_too_small_for_the_levels_is_one_line(toy_scene, tmp_path, capsys):
    code = main(["train", str(toy_scene), "--size", "2KB", "--steps", "20", "--max-level", "4", "--batch", "128",
                 "--out", str(tmp_path / "r"), "--quiet", "--device", "cpu"])
    printed = capsys.readouterr()
    err = printed.err.strip()
    assert code == 2 and "--size" in err and len(err.splitlines()) == 1
    assert "training for" not in printed.out and not (tmp_path / "r").exists()  # refused before it starts


def test_the_vq_method_spends_the_budget_on_the_cells_left_after_its_occupancy_phase(small_train):
    """The carved octree over-counts cells (all that no view rules out); bits chosen on the pruned one are higher."""
    carved = Recipe(budget_bytes=20_000, steps=160, max_level=5, occupancy_fraction=0.0)
    pruned = Recipe(budget_bytes=20_000, steps=160, max_level=5, occupancy_fraction=0.75)
    settings = TrainSettings(batch_rays=256)
    _, carved = train_for_budget(small_train, carved, settings, torch.device("cpu"), chunk=10)
    second, pruned = train_for_budget(small_train, pruned, settings, torch.device("cpu"), chunk=10)
    assert sum(pruned.level_bits) > sum(carved.level_bits)
    assert len(save_model_bytes(second.freeze({"recipe": {}}))) <= 20_000


def test_the_vq_method_drops_finest_levels_that_even_1_bit_cannot_pay_for(small_train):
    recipe = Recipe(budget_bytes=12_000, steps=20, max_level=6, occupancy_fraction=0.0)
    tuner, recipe = train_for_budget(small_train, recipe, TrainSettings(batch_rays=128), torch.device("cpu"),
                                     chunk=10)
    field = tuner.freeze({"recipe": {}})
    assert recipe.max_level < 6 and field.n_lods == recipe.max_level - recipe.base_level + 1
    assert len(save_model_bytes(field)) <= 12_000


def test_without_alpha_masks_the_cuda_recipe_stays_at_128_cubed():
    """Nothing is carved without masks: the occupancy phase would train every cell of the finest level."""
    from engine.recipe import recipe_for_budget
    assert recipe_for_budget(500_000, "cuda").max_level == 8
    assert recipe_for_budget(500_000, "cuda", masked=False).max_level == 7
    assert recipe_for_budget(500_000, "cpu", masked=False).max_level == 6


def test_the_bits_spend_what_the_ladder_leaves_of_the_budget(small_train):
    """After the largest ladder that fits (b at the finest level, one more per coarser level), levels take one more
    bit each while the file still fits: never fewer bits than that ladder, never over the budget, and no level left
    at the ladder's bits where one more would still fit."""
    from engine.recipe import METADATA_RESERVE_BYTES, model_bytes
    from engine.train import new_field
    field = new_field(small_train, "dense", None, 5, 2).freeze()

    def size(bits):  # what choose_bits holds against the budget: the file and room for the metadata added at save
        return model_bytes(field, bits) + METADATA_RESERVE_BYTES
    caps = [min(12, max(1, (rows.n_corners - 1).bit_length())) for rows in field.levels]
    last = len(caps) - 1

    def ladder(b):
        return tuple(max(1, min(b + last - k, caps[k])) for k in range(len(caps)))

    for budget in (17_000, 20_000, 30_000, 60_000):
        bits = choose_bits(field, budget)
        base = max((ladder(b) for b in range(1, 13) if size(ladder(b)) <= budget), key=sum)
        assert size(bits) <= budget
        assert all(a >= b for a, b in zip(bits, base))
        for k in range(len(bits)):
            if bits[k] == base[k] and bits[k] < caps[k]:
                assert size(bits[:k] + (bits[k] + 1,) + bits[k + 1:]) > budget


def test_visibility_finds_the_surface_of_a_solid_and_not_its_inside():
    """An opaque cube of 8^3 cells seen from all around: the cells on its surface get rendering weight, the 6^3
    cells inside get none (the recipe removes those: no view shows them, yet each costs file bytes)."""
    from engine.cameras import make_cameras, orbit_camera
    from engine.field import NeuralField
    from engine.occupancy import finest_cell_visibility
    from engine.octree import dense_octree, morton_decode
    from engine.render import default_step
    field = NeuralField(dense_octree(3), 1, "dense", feature_dim=4, scene_center=torch.zeros(3), scene_half_size=1.0)
    with torch.no_grad():
        field.decoder["w1"][:, 0] = 0.0
        field.decoder["b1"][0] = 10.0  # density e^10 everywhere: opaque within the first sample
    views = [orbit_camera(torch.zeros(3), 4.0, az, el, 40.0, 24, 24) for az in range(0, 360, 45) for el in (-35, 35)]
    cams = make_cameras(torch.cat([v.c2w for v in views]), views[0].fx, views[0].fy, 12.0, 12.0, 24, 24)
    weight = finest_cell_visibility(field, cams, 10 ** 6, default_step(1.0, 3))
    ijk = morton_decode(field.octree.cells[3])
    inside = ((ijk > 0) & (ijk < 7)).all(dim=1)
    assert weight.shape == (512,) and float(weight[inside].max()) < 1e-3
    assert float((weight[~inside] > 0.1).float().mean()) > 0.5


def test_the_bits_keep_the_training_logits_bounded(small_train):
    """A large budget does not buy rows without bound: sum of n_corners x 2^bits (the vq grid's logits, each with a
    gradient and two Adam moments) stays within Recipe.max_logits, so training time and memory follow the data set,
    not the number typed after --size."""
    from engine.train import new_field
    field = new_field(small_train, "dense", None, 5, 2).freeze()
    n = [rows.n_corners for rows in field.levels]
    free = choose_bits(field, 10 ** 9)
    bound = sum(c << b for c, b in zip(n, free)) // 4
    bounded = choose_bits(field, 10 ** 9, max_logits=bound)
    assert sum(c << b for c, b in zip(n, bounded)) <= bound
    assert all(b >= 1 for b in bounded) and bounded != free


def test_a_cuda_size_run_takes_the_recipe_steps_unless_told():
    from engine.recipe import CUDA_RECIPE_STEPS, Recipe, recipe_for_budget
    assert recipe_for_budget(500_000, "cuda").steps == CUDA_RECIPE_STEPS
    assert recipe_for_budget(500_000, "cuda", masked=False).steps == Recipe.steps
    assert recipe_for_budget(500_000, "cpu").steps == Recipe.steps
    assert recipe_for_budget(500_000, "cuda", steps=300).steps == 300


@pytest.mark.parametrize("interrupt_at_call", [1, 4])
def test_ctrl_c_in_a_size_run_keeps_the_vq_phase_model_within_the_budget(toy_scene, tmp_path, capsys,
                                                                         interrupt_training, interrupt_at_call):
    """Ctrl-C during the occupancy phase (call 1) writes nothing, and says so; during the vq phase (call 4 of 50-step
    chunks: occupancy is 20% of 400 steps, 2 chunks) it writes the model so far, which fits the budget."""
    interrupt_training(interrupt_at_call)
    out = tmp_path / "run"
    code = main(["train", str(toy_scene), "--size", "25KB", "--steps", "400", "--max-level", "4", "--batch", "128",
                 "--out", str(out), "--quiet", "--device", "cpu"])
    printed = capsys.readouterr().out
    assert code == 130
    model = out / "model.vbnf"
    if interrupt_at_call == 1:
        assert not model.exists() and "nothing was written" in printed
        return
    assert model.exists() and model_layout(model).total_bytes <= 25_000
    field = load_model(model)
    assert field.metadata["interrupted"] is True and field.metadata["train_steps"] == 50  # the vq phase's chunk
    assert "wrote" in printed and "130 of 400 steps" in printed
