"""Drives the real viewer in tests (no tests here): window size, settling, and input injection.

The viewer runs for real: GLFW's Null platform with an EGL context (Mesa llvmpipe on CI), real shaders, real ImGui;
input goes through imgui-bundle's GLFW backend callbacks, exactly where a real mouse's events go.
The fixtures that build models and apps (tiny_model, make_app) are in conftest.py.
"""
from __future__ import annotations

import numpy as np

import imgui_bundle  # noqa: F401  (before glfw: one libglfw)
from imgui_bundle import imgui
import glfw

W, H = 128, 96  # test window: small, so a full CPU render takes well under a second


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
