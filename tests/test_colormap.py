"""One colormap for every tool: the shader's constants are engine.colormap's and engine.modes' (the CUDA kernel's mode
ids too), and `vbnf render` colours a depth image exactly as `vbnf compare` and the viewer do (same view -> same
pixels)."""
from __future__ import annotations

import re
from importlib.resources import files

import numpy as np
import pytest
import torch
from PIL import Image

from engine import colormap
from engine.cameras import image_rays, orbit_camera
from engine.colormap import display_rgb, field_value_range, to_uint8
from engine.fileformat import load_model
from engine.modes import MODE_IDS
from engine.render import render_image

SHADER = (files("viewer") / "shaders" / "field.frag").read_text()


def glsl_vector(name: str) -> np.ndarray:
    match = re.search(rf"const vec[24] {name} = vec[24]\(([^)]*)\);", SHADER)
    assert match, f"shaders/field.frag has no constant {name}"
    return np.array([float(v) for v in match.group(1).split(",")])


@pytest.mark.parametrize("name", ["kr4", "kg4", "kb4", "kr2", "kg2", "kb2"])
def test_shader_turbo_coefficients_are_the_python_ones(name):
    assert np.array_equal(glsl_vector(name), getattr(colormap, f"_{name.upper()}"))


def test_shader_mode_ids_are_engine_modes():
    ids = {m.group(1).lower(): int(m.group(2)) for m in re.finditer(r"const int MODE_(\w+) = (\d+);", SHADER)}
    assert ids == MODE_IDS


def test_vbnf_render_colours_depth_like_compare_and_the_viewer(tiny_model, tmp_path):
    from engine.cli import main
    out = tmp_path / "depth.png"
    assert main(["render", str(tiny_model), "--mode", "depth", "--size", "48x40", "--camera", "30,25,2.5",
                 "--device", "cpu", "--out", str(out)]) == 0
    png = np.asarray(Image.open(out).convert("RGB"))
    # what vbnf compare and the viewer do with the same view: engine.colormap over the same range
    field = load_model(tiny_model)
    cams = orbit_camera(field.scene_center, 2.5, 30.0, 25.0, 40.0, 48, 40)
    origins, dirs = image_rays(cams, 0)
    depth = render_image(field, origins, dirs, 48, 40, field.max_lod, "depth", (1.0, 1.0, 1.0))
    expected = to_uint8(display_rgb(depth.numpy(), "depth", field_value_range(field, "depth", cams.c2w[0, :3, 3]),
                                    (1.0, 1.0, 1.0)))
    assert np.array_equal(png, expected)
    hit = depth.numpy() > 0
    assert hit.any() and (~hit).any()
    assert (png[hit].max(axis=1) - png[hit].min(axis=1)).max() > 50  # coloured, not grey
    assert (png[~hit] == 255).all()  # no hit: the background


def test_value_range_depends_on_the_view_not_the_image(tiny_model):
    field = load_model(tiny_model)
    near = field_value_range(field, "depth", torch.tensor([0.0, 0.0, 5.0]))
    far = field_value_range(field, "depth", torch.tensor([0.0, 0.0, 7.0]))
    assert 0 < near[0] < near[1] and far[0] == pytest.approx(near[0] + 2.0) and far[1] == pytest.approx(near[1] + 2.0)


def test_cuda_kernel_mode_ids_are_engine_modes():
    sources = "".join(p.read_text() for p in (files("engine") / "cuda").iterdir()
                      if p.name.endswith((".cu", ".cuh", ".h")))
    ids = {m.group(1).lower(): int(m.group(2)) for m in re.finditer(r"#define MODE_(\w+) (\d+)", sources)}
    assert ids == MODE_IDS
