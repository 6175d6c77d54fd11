"""Mouse and keyboard over the field view, read from ImGui's IO (so input injected through imgui-bundle's GLFW
backend callbacks drives it exactly as a real mouse does). Input that ImGui wants (over the panel, typing in a text
box) is left to ImGui.

Mouse: left drag orbits; right or middle drag pans; the wheel zooms; in the split view, a left drag that starts on
the divider moves the divider. Keys: R resets the camera, F12 or P takes a screenshot, Tab shows/hides the panel.
"""
from __future__ import annotations

from imgui_bundle import imgui

from viewer.actions import Actions
from viewer.state import AppState

DIVIDER_GRAB_PX = 6.0


class ViewControls:
    """Turns mouse drags, wheel and keys into camera moves and commands. Holds only whether the divider is being
    dragged (a fact about the mouse, not about the app)."""

    def __init__(self) -> None:
        self.dragging_divider = False

    def handle(self, state: AppState, actions: Actions) -> None:
        io = imgui.get_io()
        if not io.want_capture_keyboard and not io.want_text_input:
            if imgui.is_key_pressed(imgui.Key.r, False):
                actions.reset_camera()
            if imgui.is_key_pressed(imgui.Key.f12, False) or imgui.is_key_pressed(imgui.Key.p, False):
                actions.screenshot()
            if imgui.is_key_pressed(imgui.Key.tab, False):
                state.show_panel = not state.show_panel
            if imgui.is_key_pressed(imgui.Key.f1, False) or _question_mark_typed(io):
                state.show_help = not state.show_help
            if imgui.is_key_pressed(imgui.Key.escape, False):
                state.show_help = False
                state.error = ""
        if io.want_capture_mouse and not self.dragging_divider:
            return
        left, top, width, height = state.view.rect
        if width <= 0 or height <= 0:
            return
        mx, my = io.mouse_pos.x - left, io.mouse_pos.y - top
        dx, dy = io.mouse_delta.x, io.mouse_delta.y
        valid = abs(mx) < 1e30 and abs(my) < 1e30  # ImGui marks an unknown position with -FLT_MAX
        split = state.compare.enabled
        if imgui.is_mouse_clicked(imgui.MouseButton_.left) and valid and split:
            self.dragging_divider = abs(mx - state.compare.divider * width) <= DIVIDER_GRAB_PX
        if not imgui.is_mouse_down(imgui.MouseButton_.left):
            self.dragging_divider = False
        if not valid:
            return
        if self.dragging_divider:
            state.compare.divider = min(1.0, max(0.0, mx / width))
            return
        if imgui.is_mouse_down(imgui.MouseButton_.left) and (dx or dy):
            state.camera.orbit(dx, dy)
        elif (imgui.is_mouse_down(imgui.MouseButton_.right) or imgui.is_mouse_down(imgui.MouseButton_.middle)) \
                and (dx or dy):
            state.camera.pan(dx, dy, int(height))
        if io.mouse_wheel:
            state.camera.zoom(io.mouse_wheel)


def _question_mark_typed(io) -> bool:
    """'?' was typed this frame (as text: its key differs between keyboard layouts)."""
    try:
        return any(chr(c) == "?" for c in io.input_queue_characters)
    except Exception:
        return imgui.is_key_pressed(imgui.Key.slash, False) and io.key_shift
