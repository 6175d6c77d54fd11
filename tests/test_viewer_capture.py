"""Screenshots and the comparison view: PNGs equal to what the window shows, settings in the PNG and the name,
never an overwrite; the split view shows both sides and saves a labelled image."""
from __future__ import annotations

import json

import imgui_bundle  # noqa: F401  (before glfw)
import glfw
import numpy as np
from PIL import Image

from fields import make_tiny_model
from viewer_driver import H, W, differs, drag, hide_panel, press_key, settle


def _pngs(folder):
    return sorted(folder.glob("*.png")) if folder.exists() else []


def test_screenshot_equals_the_framebuffer_and_carries_the_settings(make_app, tiny_model, tmp_path):
    app = make_app(tiny_model)
    hide_panel(app)
    app.state.lod = 2
    screen = settle(app)
    app.actions.screenshot()  # the panel's "Screenshot (F12)" button
    settle(app)
    out = tmp_path / "out"
    files = _pngs(out)
    assert len(files) == 1, app.state.error
    png = Image.open(files[0])
    assert np.array_equal(np.asarray(png.convert("RGB")), screen)
    assert "lod2" in files[0].name and "b4" in files[0].name and f"{W}x{H}" in files[0].name
    assert png.text["vbnf:lod"] == "2"
    settings = json.loads(png.text["vbnf:settings"])
    assert settings["model"] == "tiny.vbnf" and settings["mode"] == "rgb" and settings["width"] == W
    assert str(files[0]) in app.state.message
    # The key (P) takes another with the same settings: a counter, never an overwrite.
    before = files[0].read_bytes()
    press_key(app, glfw.KEY_P)
    settle(app)
    files = _pngs(out)
    assert len(files) == 2
    assert files[0].read_bytes() == before
    assert any(f.stem.endswith("_1") for f in files)


def test_screenshot_at_twice_the_window_resolution(make_app, tiny_model, tmp_path):
    app = make_app(tiny_model)
    hide_panel(app)
    settle(app)
    app.actions.screenshot(scale=2)
    settle(app)
    files = _pngs(tmp_path / "out")
    assert len(files) == 1
    image = np.asarray(Image.open(files[0]).convert("RGB"))
    assert image.shape == (2 * H, 2 * W, 3)
    assert (image != 255).any()


def test_screenshot_of_a_colour_mapped_mode(make_app, tiny_model, tmp_path):
    app = make_app(tiny_model)
    hide_panel(app)
    app.state.render_mode = "depth"
    screen = settle(app)
    app.actions.screenshot()
    settle(app)
    (path,) = _pngs(tmp_path / "out")
    assert "depth" in path.name
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), screen)
    centre = screen[H // 2, W // 2].astype(int)
    assert abs(centre[0] - centre[2]) > 40  # turbo colours, not grey


def test_comparison_view_shows_both_sides(make_app, tiny_model, tmp_path):
    app = make_app(tiny_model)
    hide_panel(app)
    fine = settle(app)
    app.state.lod = 0
    coarse = settle(app)
    app.state.lod = 3
    c = app.state.compare
    c.enabled, c.kind, c.lod_b, c.divider = True, "lod", 0, 0.5
    split = settle(app)
    half = W // 2
    # Left of the divider: side A (LOD 3); right: side B (LOD 0); the divider line between. (The top rows hold the
    # two labels.)
    below = 56
    assert not differs(split[below:, : half - 2], fine[below:, : half - 2], 0)
    assert not differs(split[below:, half + 2:], coarse[below:, half + 2:], 0)
    assert differs(split[:below], fine[:below], 50)  # labels drawn
    assert (split[:, half - 1: half + 1] == [255, 204, 26]).all(axis=2).any()
    assert "LOD 3" in app.state.view.label_a and "LOD 0" in app.state.view.label_b
    # Drag the divider with the mouse.
    drag(app, (half, H / 2), (W * 0.75, H / 2))
    assert abs(c.divider - 0.75) < 0.02
    # Save comparison: the labelled split image.
    app.actions.save_comparison()
    settle(app)
    (path,) = _pngs(tmp_path / "out")
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == (H, W, 3)
    text = Image.open(path).text
    assert "LOD 3" in text["vbnf:side_a"] and "LOD 0" in text["vbnf:side_b"]
    assert "vs_lod" in path.name


def test_comparison_of_bitwidths_and_of_another_model(make_app, tiny_model, tmp_path):
    app = make_app(tiny_model)
    hide_panel(app)
    c = app.state.compare
    c.enabled, c.kind, c.bits_b = True, "bits", 1
    settle(app)
    assert "4 bits" in app.state.view.label_a and "1 bits" in app.state.view.label_b
    other = make_tiny_model(tmp_path / "other.vbnf", bits=3, seed=5)
    c.kind, c.model_b_path = "model", str(other)
    split = settle(app)
    assert app.state.view.label_b.startswith("other.vbnf") and "3 bits" in app.state.view.label_b
    c.model_b_path = str(tmp_path / "missing.vbnf")
    app.frame()
    assert "missing.vbnf" in app.state.view.notice  # one line on the view; side A keeps rendering
    assert app.state.view.label_a
    assert split.shape == (H, W, 3)
