"""F2/F4/F5 of issue 13, the renderer's side: what a file says (its level count, its octree depth, its scene box)
never sets the renderer's memory; a model it cannot march is refused in one line; an empty octree level renders in
every mode."""
from __future__ import annotations

import pytest
import torch

import engine.render as render
from bad_inputs import chain_field, f5_empty_level_field, shell_field
from engine.cameras import image_rays, orbit_camera
from engine.octree import DENSE_LOOKUP_MAX_LEVEL, lookup_occupied, occupancy_grid, octree_from_cells
from engine.render import MAX_SAMPLES_PER_RAY, SAMPLE_BUDGET, RenderError, render_image


def rays(field, size: int = 24):
    cams = orbit_camera(field.scene_center, 4.0, 30.0, 25.0, 40.0, size, size)
    return image_rays(cams, 0)


def record_chunks(monkeypatch) -> list[int]:
    """Samples ([rays x samples per ray]) of every render_rays call."""
    sizes = []
    original = render.render_rays

    def spy(field_fn, octree, level, center, half_size, step, origins, dirs, *args, **kwargs):
        span = render.ray_cube_interval(origins, dirs, center, half_size)
        k = int(torch.ceil((span[1] - span[0]).clamp_min(0).max() / step).item()) + 1 if origins.shape[0] else 0
        sizes.append(origins.shape[0] * k)
        return original(field_fn, octree, level, center, half_size, step, origins, dirs, *args, **kwargs)
    monkeypatch.setattr(render, "render_rays", spy)
    return sizes


@pytest.mark.parametrize("depth", [10, 12, 14])
def test_deep_chains_render_in_chunks_bounded_by_the_sample_budget(depth, monkeypatch):
    """A single-cell chain down to level `depth` (a ~10 kB file asked for 1.5-12 GB): every chunk holds at most
    SAMPLE_BUDGET samples, and levels above DENSE_LOOKUP_MAX_LEVEL use no dense occupancy grid."""
    field = chain_field(depth)
    sizes = record_chunks(monkeypatch)
    o, d = rays(field, 8)
    image = render_image(field, o, d, 8, 8, field.max_lod, "rgb")
    assert image.shape == (8, 8, 3) and bool(torch.isfinite(image).all())
    assert sizes and max(sizes) <= SAMPLE_BUDGET
    assert all(level <= DENSE_LOOKUP_MAX_LEVEL for level in field.octree.dense_cache)


def test_chunks_of_an_ordinary_model_are_unchanged_and_the_image_is_the_same(monkeypatch):
    field = shell_field(5, 2)
    o, d = rays(field, 32)
    whole = render_image(field, o, d, 32, 32, field.max_lod, "rgb")
    monkeypatch.setattr(render, "SAMPLE_BUDGET", 5000)  # many small chunks
    sizes = record_chunks(monkeypatch)
    chunked = render_image(field, o, d, 32, 32, field.max_lod, "rgb")
    assert max(sizes) <= 5000 and len(sizes) > 10
    torch.testing.assert_close(chunked, whole)


@pytest.mark.parametrize("n_lods", [16, 19])
def test_an_inflated_lod_count_is_refused_in_one_line_before_allocating(n_lods):
    """F2: n_lods raised in a small file makes the step tiny (48 GB asked for a 64x64 image before)."""
    field = shell_field(4, 1)
    field.n_lods = n_lods
    o, d = rays(field, 64)
    with pytest.raises(RenderError, match="samples per ray") as err:
        render_image(field, o, d, 64, 64, field.max_lod, "rgb")
    assert "\n" not in str(err.value) and f"{MAX_SAMPLES_PER_RAY:,}" in str(err.value)


@pytest.mark.parametrize("center,half", [((1e30, 0.0, 0.0), 5e-324), ((0.0, 0.0, 0.0), float("nan")),
                                         ((float("inf"), 0.0, 0.0), 1.0), ((0.0, 0.0, 0.0), -1.0)])
def test_a_degenerate_scene_box_is_one_line_not_a_nan_crash(center, half):
    """F4 at the renderer (the loader rejects these files too): no 'cannot convert float NaN to integer'."""
    field = shell_field(3, 1)
    o, d = rays(field, 8)
    field.scene_center = torch.tensor(center, dtype=torch.float32)
    field.scene_half_size = half
    with pytest.raises(RenderError, match="scene box"):
        render_image(field, o, d, 8, 8, field.max_lod, "rgb")


@pytest.mark.parametrize("mode", render.RENDER_MODES)
def test_an_empty_octree_level_renders_in_every_mode(mode):
    """F5: `--mode level` raised IndexError in octree.descend when a level has no cells."""
    field = f5_empty_level_field()
    o, d = rays(field, 16)
    image = render_image(field, o, d, 16, 16, field.max_lod, mode)
    assert bool(torch.isfinite(image).all())
    if mode == "level":
        assert int(image.max()) <= 2  # nothing below the last occupied level


def test_the_sparse_occupancy_lookup_matches_the_dense_one(monkeypatch):
    import engine.octree as octree_mod
    gen = torch.Generator().manual_seed(1)
    field = shell_field(6, 2)
    points = torch.rand(5000, 3, generator=gen)
    for level in range(1, 7):
        dense = lookup_occupied(field.octree, points, level)
        monkeypatch.setattr(octree_mod, "DENSE_LOOKUP_MAX_LEVEL", 0)
        sparse = lookup_occupied(field.octree, points, level)
        monkeypatch.setattr(octree_mod, "DENSE_LOOKUP_MAX_LEVEL", DENSE_LOOKUP_MAX_LEVEL)
        assert torch.equal(dense, sparse), level
    empty = octree_from_cells([torch.zeros(1, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)])
    monkeypatch.setattr(octree_mod, "DENSE_LOOKUP_MAX_LEVEL", 0)
    assert not lookup_occupied(empty, points, 1).any()
    assert occupancy_grid(empty, 1).sum() == 0


@pytest.mark.parametrize("mode", render.RENDER_MODES)
def test_render_command_on_a_file_with_an_empty_level(mode, tmp_path, capsys):
    """F5 through the command line and the file: every mode renders (exit 0)."""
    from engine.cli import main
    from engine.fileformat import save_model
    model = tmp_path / "empty_level.vbnf"
    save_model(model, f5_empty_level_field())
    code = main(["render", str(model), "--mode", mode, "--size", "16x12", "--out", str(tmp_path / f"{mode}.png"),
                 "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
