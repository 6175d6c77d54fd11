"""Shared helpers of the viewer tests (no tests here): tiny models, an App fixture, input injection.

The viewer runs for real: GLFW's Null platform with an EGL context (Mesa llvmpipe on CI), real shaders, real ImGui;
input goes through imgui-bundle's GLFW backend callbacks, exactly where a real mouse's events go.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import imgui_bundle  # noqa: F401  (before glfw: one libglfw)
from imgui_bundle import imgui
import glfw

from engine.field import NeuralField
from engine.fileformat import save_model
from engine.octree import morton_encode, octree_from_finest_cells

W, H = 128, 96  # test window: small, so a full CPU render takes well under a second


def shell_octree(max_level: int, radius: float = 0.28) -> object:
    """Cells of `max_level` within one cell of a sphere of `radius` (unit cube units) around the centre."""
    r = 1 << max_level
    ax = torch.arange(r)
    xyz = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    centre = (xyz.float() + 0.5) / r - 0.5
    keep = (centre.norm(dim=1) - radius).abs() < 1.0 / r
    return octree_from_finest_cells(morton_encode(xyz[keep]), max_level)


def make_tiny_model(path: Path, bits: int = 4, max_level: int = 4, base_level: int = 1, seed: int = 1,
                    metadata: dict | None = None) -> Path:
    """A small vq field whose decoder is biased to show an opaque, colourful shell; every LOD looks different."""
    field = NeuralField(shell_octree(max_level), base_level, "vq", feature_dim=8, bits=bits, seed=seed)
    with torch.no_grad():
        field.decoder["b1"][0] = 3.0  # density e^3 per world unit inside occupied cells
        for codebook in field.grid.codebooks:
            codebook.mul_(20.0)  # strong features: colours vary across corners and LODs
    save_model(path, field.freeze(), metadata or {})
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny.vbnf")


@pytest.fixture
def make_app(tmp_path):
    """Factory: make_app(model, width, height) -> a headless App; closed after the test."""
    from viewer.app import App
    apps = []

    def make(model: Path | None, width: int = W, height: int = H, **kwargs):
        app = App(str(model) if model else None, width, height, headless=True, output_dir=str(tmp_path / "out"),
                  **kwargs)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def settle(app, timeout_s: float = 60.0) -> np.ndarray:
    """Runs frames until the image is final; returns the window's pixels."""
    assert app.run_until_idle(timeout_s), "the view did not settle"
    return app.read_screen()


def hide_panel(app) -> None:
    app.state.show_panel = False


# -- input, through imgui-bundle's GLFW backend callbacks ----------------------------------------------------------


def mouse_move(app, x: float, y: float) -> None:
    imgui.backends.glfw_cursor_enter_callback(app.window.address, 1)
    imgui.backends.glfw_cursor_pos_callback(app.window.address, float(x), float(y))


def mouse_button(app, button: int, press: bool) -> None:
    imgui.backends.glfw_mouse_button_callback(app.window.address, button, glfw.PRESS if press else glfw.RELEASE, 0)


def drag(app, start: tuple[float, float], end: tuple[float, float], button: int = glfw.MOUSE_BUTTON_LEFT,
         steps: int = 4) -> None:
    """Press at start, move in `steps` frames to end, release; one frame per event (ImGui trickles input)."""
    mouse_move(app, *start)
    app.frame()
    mouse_button(app, button, True)
    app.frame()
    for i in range(1, steps + 1):
        t = i / steps
        mouse_move(app, start[0] + (end[0] - start[0]) * t, start[1] + (end[1] - start[1]) * t)
        app.frame()
    mouse_button(app, button, False)
    app.frame()


def scroll(app, steps: float) -> None:
    imgui.backends.glfw_scroll_callback(app.window.address, 0.0, float(steps))
    app.frame()  # ImGui trickles input: a wheel event queued after a move is taken one frame later
    app.frame()


def press_key(app, key: int) -> None:
    imgui.backends.glfw_key_callback(app.window.address, key, 0, glfw.PRESS, 0)
    app.frame()
    imgui.backends.glfw_key_callback(app.window.address, key, 0, glfw.RELEASE, 0)
    app.frame()


def differs(a: np.ndarray, b: np.ndarray, min_pixels: int = 20) -> bool:
    """More than `min_pixels` pixels differ by more than 8 levels in some channel."""
    return int((np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 8).sum()) > min_pixels
