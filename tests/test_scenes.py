"""The procedural scene generator (engine/scenes.py): deterministic, has object and background, stays
inside the Blender scene cube, antialiased."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.cameras import image_rays
from engine.errors import VbnfError
from engine.scenes import (CAMERA_RADIUS, SCENE_NAMES, SCENE_RADIUS, intersect_scene, make_scene, render_view,
                           scene_cameras)

RES = 48


def _files(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under root."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = _files(make_scene(tmp_path / "a", n_train=3, n_test=2, n_val=1, resolution=24, seed=5))
    b = _files(make_scene(tmp_path / "b", n_train=3, n_test=2, n_val=1, resolution=24, seed=5))
    assert a == b
    assert sorted(a) == sorted(
        ["transforms_train.json", "transforms_val.json", "transforms_test.json"]
        + [f"train/r_{i}.png" for i in range(3)] + ["val/r_0.png", "test/r_0.png", "test/r_1.png"]
    )
    c = _files(make_scene(tmp_path / "c", n_train=3, n_test=2, n_val=1, resolution=24, seed=6))
    assert c["transforms_train.json"] != a["transforms_train.json"]


def test_alpha_has_object_and_background(tmp_path: Path) -> None:
    root = make_scene(tmp_path, n_train=4, n_test=1, n_val=1, resolution=RES)
    meta = json.loads((root / "transforms_train.json").read_text())
    assert meta["camera_angle_x"] == pytest.approx(0.69, abs=0.01)
    for frame in meta["frames"]:
        im = np.asarray(Image.open(root / (frame["file_path"] + ".png")))
        assert im.shape == (RES, RES, 4)
        alpha = im[..., 3]
        assert (alpha == 0).any() and (alpha == 255).any()
        assert ((alpha > 0) & (alpha < 255)).any()  # antialiased edges
        coverage = (alpha / 255.0).mean()
        assert 0.15 < coverage < 0.8  # the object fills a good part of the view
        assert alpha[0, :].max() == 0 and alpha[:, 0].max() == 0  # not cut off at the border
        assert alpha[-1, :].max() == 0 and alpha[:, -1].max() == 0


def test_cameras_look_at_origin() -> None:
    for split in ("train", "val", "test"):
        cams = scene_cameras(8, RES, split, seed=0)
        pos = cams.c2w[:, :3, 3]
        torch.testing.assert_close(pos.norm(dim=1), torch.full((8,), CAMERA_RADIUS))
        forward = -cams.c2w[:, :3, 2]
        torch.testing.assert_close(forward, -pos / CAMERA_RADIUS, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", SCENE_NAMES)
def test_object_within_cube(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    d = torch.randn(200_000, 3, generator=g)
    d = d / d.norm(dim=1, keepdim=True)
    o = -3.0 * d + 0.8 * torch.randn(200_000, 3, generator=g)
    t, prim = intersect_scene(o, d, name)
    hit = torch.isfinite(t)
    assert hit.float().mean() > 0.1
    assert torch.all(prim[~hit] == -1) and torch.all(prim[hit] >= 0)
    points = o[hit] + t[hit, None] * d[hit]
    assert points.norm(dim=1).max() <= SCENE_RADIUS
    assert points.abs().max() < 1.5


def test_rendered_pixels_outside_bounding_sphere_are_empty() -> None:
    cams = scene_cameras(3, RES, "train", seed=1)
    for i in range(3):
        rgba = render_view(cams, i, samples_per_pixel=4, seed=i)
        assert rgba.shape == (RES, RES, 4) and rgba.min() >= 0 and rgba.max() <= 1
        o, d = image_rays(cams, i)
        t = (-o * d).sum(-1)
        miss_dist = (o + t[:, None] * d).norm(dim=-1).reshape(RES, RES)
        pixel = CAMERA_RADIUS / cams.fx * 1.5  # a pixel's footprint near the origin, with margin
        outside = miss_dist > SCENE_RADIUS + pixel
        assert outside.any() and torch.all(rgba[..., 3][outside] == 0)


def test_unknown_scene_name(tmp_path: Path) -> None:
    with pytest.raises(VbnfError, match="unknown scene"):
        make_scene(tmp_path, name="nope", n_train=1, n_test=0, n_val=0, resolution=8)


def test_lattice_adds_thin_parts_to_toys() -> None:
    """The "lattice" scene is "toys" plus thin rods and a ring: some pixels differ, most stay the same."""
    cams = scene_cameras(2, RES, "test", seed=0)
    for i in range(2):
        toys = render_view(cams, i, samples_per_pixel=1, seed=i, name="toys")
        lattice = render_view(cams, i, samples_per_pixel=1, seed=i, name="lattice")
        changed = (toys - lattice).abs().amax(-1) > 0.05
        assert 0.002 < changed.float().mean() < 0.2
