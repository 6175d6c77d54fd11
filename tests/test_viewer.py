"""The viewer window: opens a model and draws it, mouse and keys move the camera, errors and odd window sizes keep
it running. Real GLFW (Null platform) + EGL + ImGui; input injected through imgui-bundle's GLFW callbacks."""
from __future__ import annotations

import time

import imgui_bundle  # noqa: F401  (before glfw: one libglfw, the one with a working Null platform + EGL)
import glfw
import numpy as np
import pytest
import torch

from fields import make_tiny_model
from viewer_driver import H, W, differs, drag, hide_panel, mouse_move, press_key, scroll, settle


def test_opens_a_model_and_draws_a_nonempty_frame(make_app, tiny_model):
    app = make_app(tiny_model)
    hide_panel(app)
    pixels = settle(app)
    assert pixels.shape == (H, W, 3)
    assert app.state.error == ""
    assert app.state.stats.render_size == (W, H)  # refined to full resolution once still
    background = np.array([255, 255, 255])
    centre = pixels[H // 2 - 8: H // 2 + 8, W // 2 - 8: W // 2 + 8].reshape(-1, 3)
    assert (np.abs(centre.astype(int) - background).max(axis=1) > 30).mean() > 0.9  # the object covers the centre
    corners = pixels[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == 255).all()  # background around it
    if torch.cuda.is_available():
        assert app.state.stats.render_path.startswith("cuda")
    else:
        assert app.state.stats.render_path == "cpu"
        reason = app.state.stats.render_path_reason
        assert "cuda" in reason.lower() and "\n" not in reason  # one line saying why the CUDA path is not used


def test_left_drag_orbits_the_view(make_app, tiny_model):
    app = make_app(tiny_model)
    hide_panel(app)
    before = settle(app)
    azimuth, elevation = app.state.camera.azimuth_deg, app.state.camera.elevation_deg
    drag(app, (W * 0.5, H * 0.5), (W * 0.5 + 40, H * 0.5 + 10))
    assert app.state.camera.azimuth_deg != azimuth
    assert app.state.camera.elevation_deg != elevation
    after = settle(app)
    assert differs(before, after)


def test_right_drag_pans_and_wheel_zooms(make_app, tiny_model):
    app = make_app(tiny_model)
    hide_panel(app)
    app.frame()
    target, distance = app.state.camera.target, app.state.camera.distance
    drag(app, (W * 0.5, H * 0.5), (W * 0.5 + 20, H * 0.5), button=glfw.MOUSE_BUTTON_RIGHT)
    assert app.state.camera.target != target
    assert app.state.camera.distance == distance
    mouse_move(app, W * 0.5, H * 0.5)
    scroll(app, 2)
    assert app.state.camera.distance < distance


def test_mouse_over_the_panel_does_not_move_the_camera(make_app, tiny_model):
    app = make_app(tiny_model, 320, 240)
    app.frame()
    app.frame()
    azimuth = app.state.camera.azimuth_deg
    drag(app, (60, 120), (120, 120))  # starts on the panel (it covers x < 348)
    assert app.state.camera.azimuth_deg == azimuth


def test_keys_reset_the_camera_and_toggle_the_panel(make_app, tiny_model):
    app = make_app(tiny_model)
    app.state.show_panel = False
    app.frame()
    default = app.state.camera.key()
    app.state.camera.orbit(50, 20)
    app.state.camera.zoom(3)
    assert app.state.camera.key() != default
    press_key(app, glfw.KEY_R)
    assert app.state.camera.key() == default
    press_key(app, glfw.KEY_TAB)
    assert app.state.show_panel


def test_a_corrupted_model_shows_an_error_and_keeps_the_current_one(make_app, tiny_model, tmp_path):
    app = make_app(tiny_model)
    hide_panel(app)
    before = settle(app)
    bad = tmp_path / "broken.vbnf"
    data = bytearray(tiny_model.read_bytes())
    data[200:260] = b"\x00" * 60  # inside the metadata / first chunks: CRC or JSON fails
    bad.write_bytes(bytes(data))
    assert not app.actions.open_model(bad)
    assert str(bad) in app.state.error and "\n" not in app.state.error
    assert "current model stays open" in app.state.error
    assert app.state.model_path == str(tiny_model)
    after = settle(app)
    assert not differs(before[:-32], after[:-32], 0)  # same model, same picture (the error line is at the bottom)
    assert differs(before[-32:], after[-32:], 0)
    # A missing file and a text file fail the same way.
    for path in (tmp_path / "missing.vbnf", tmp_path / "notes.txt"):
        if path.suffix == ".txt":
            path.write_text("hello")
        assert not app.actions.open_model(path)
        assert str(path) in app.state.error
    app.frame()
    assert app.state.model.name == "tiny.vbnf"


def test_a_dropped_file_opens(make_app, tiny_model, tmp_path):
    other = make_tiny_model(tmp_path / "other.vbnf", seed=7)
    app = make_app(tiny_model)
    app.frame()
    app.window._drop_cb(app.window.handle, [str(other)])  # what GLFW calls on a drop
    settle(app)  # read on a worker thread, shown once read
    assert app.state.model_path == str(other)
    assert app.state.model.name == "other.vbnf"


OPEN_SECONDS = 3.0  # the stand-in for a large file's read and checks


def test_a_slow_model_file_opens_without_freezing_the_view(make_app, tiny_model, tmp_path, monkeypatch):
    """Opening reads and checks the whole file (seconds for a large one): the frames go on meanwhile, showing the
    current model and a notice; then the new model is shown. A file that fails does so in one line, later."""
    import viewer.actions
    other = make_tiny_model(tmp_path / "other.vbnf", seed=7)
    real_open = viewer.actions.FieldSource.open

    def slow_open(path):
        time.sleep(OPEN_SECONDS)
        return real_open(path)

    app = make_app(tiny_model)
    settle(app)
    monkeypatch.setattr(viewer.actions.FieldSource, "open", staticmethod(slow_open))
    app.window._drop_cb(app.window.handle, [str(other)])
    t0 = time.perf_counter()
    frames = []
    while app.state.model_path != str(other) and time.perf_counter() - t0 < 30:
        start = time.perf_counter()
        app.frame()
        frames.append(time.perf_counter() - start)
        if len(frames) == 2:
            assert "opening" in app.state.message and app.state.model.name == "tiny.vbnf"
    assert app.state.model.name == "other.vbnf"
    assert len(frames) > 3 and max(frames) < OPEN_SECONDS / 2  # no frame waited for the read
    bad = tmp_path / "notes.vbnf"
    bad.write_text("hello")
    app.actions.request_open(bad)
    settle(app)
    assert str(bad) in app.state.error and "current model stays open" in app.state.error
    assert app.state.model.name == "other.vbnf"


def test_a_zero_size_window_does_not_crash(make_app, tiny_model):
    app = make_app(tiny_model)
    app.frame()
    glfw.set_window_size(app.window.handle, 0, 0)
    for _ in range(3):
        app.frame()
    glfw.iconify_window(app.window.handle)
    app.frame()
    glfw.restore_window(app.window.handle)
    glfw.set_window_size(app.window.handle, W, H)
    hide_panel(app)
    pixels = settle(app)
    assert pixels.shape == (H, W, 3)
    assert (pixels != 255).any()


def test_a_window_resize_rerenders_at_the_new_size(make_app, tiny_model):
    app = make_app(tiny_model)
    hide_panel(app)
    settle(app)
    glfw.set_window_size(app.window.handle, W // 2, H // 2)
    pixels = settle(app)
    assert pixels.shape == (H // 2, W // 2, 3)
    assert app.state.stats.render_size == (W // 2, H // 2)


def test_the_field_is_drawn_beside_the_docked_panel(make_app, tiny_model):
    app = make_app(tiny_model, 480, 120)
    pixels = settle(app)
    panel = app.state.view.panel_width
    assert 200 <= panel < 400
    x0, _, width, height = app.state.view.rect
    assert x0 == panel and width == 480 - panel and height == 120
    assert app.state.stats.render_size == (480 - int(round(panel)), 120)
    field = pixels[:, int(panel) + 2:]
    object_columns = np.nonzero((field != 255).any(axis=2).any(axis=0))[0]
    centre = (object_columns.min() + object_columns.max()) / 2
    assert abs(centre - field.shape[1] / 2) < 12  # the object is centred in the field's part of the window
    app.state.show_panel = False  # Tab: the field takes the whole window
    settle(app)
    assert app.state.stats.render_size == (480, 120)


def test_ladder_shows_stored_psnr(make_app, tmp_path):
    metrics = {"test_per_lod": [{"lod": k, "psnr": 20.0 + k} for k in range(4)]}
    model = make_tiny_model(tmp_path / "scored.vbnf", metadata={"metrics": metrics})
    app = make_app(model)
    app.frame()
    assert app.state.model.ladder_psnr == {0: 20.0, 1: 21.0, 2: 22.0, 3: 23.0}
    assert app.state.view.label_a.endswith("23.00 dB")
    app.state.bits = 2  # another bitwidth: the stored PSNRs no longer describe it
    app.frame()
    assert app.state.model.ladder_psnr == {}


def test_vbnf_view_headless_screenshot_from_the_command_line(tiny_model, tmp_path, capsys):
    from engine.cli import main
    out = tmp_path / "shots"
    assert main(["view", str(tiny_model), "--headless", "--screenshot", "--size", "96x64",
                 "--output-dir", str(out)]) == 0
    (path,) = out.glob("*.png")
    assert str(path) in capsys.readouterr().out
    assert main(["view", str(tmp_path / "missing.vbnf"), "--headless"]) == 2
    assert "missing.vbnf" in capsys.readouterr().err


def test_browse_without_a_display_opens_the_viewers_own_chooser(make_app, tiny_model, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    app = make_app(tiny_model)
    app.frame()
    app.actions.browse_for_model()  # the "Browse..." button
    for _ in range(3):
        app.frame()
    assert app.actions.browser is not None and app.actions.browser.open  # drawn with ImGui: no zenity needed
    assert not app.state.error
    assert app.state.model.name == "tiny.vbnf"


def test_on_a_software_rasteriser_each_frame_is_finished_at_swap(make_app, tiny_model):
    """llvmpipe without a display queues frames without bound; the viewer finishes each one, so that no later
    upload waits for a pile of them (docs/VIEWER.md). Hardware GL paces itself and is left alone."""
    from viewer.window import is_software_renderer
    assert is_software_renderer("llvmpipe (LLVM 15.0.6, 256 bits)") and is_software_renderer("softpipe")
    assert not is_software_renderer("NVIDIA H200/PCIe/SSE2") and not is_software_renderer("AMD Radeon RX 7900")
    app = make_app(tiny_model)
    if not is_software_renderer(app.window.ctx.info.get("GL_RENDERER", "")):
        pytest.skip("this machine's GL is hardware: frames are not finished at swap there")
    assert app.window.software_gl
    real, finished = app.window.ctx, []

    class Counting:
        def __getattr__(self, name):
            return getattr(real, name)

        def finish(self):
            finished.append(app.frames)
            real.finish()
    app.window.ctx = Counting()
    try:
        for _ in range(3):
            app.frame()
    finally:
        app.window.ctx = real
    assert len(finished) == 3


def test_priming_the_shader_variants_leaves_the_screen_as_it_was(make_app, tiny_model):
    """On a software rasteriser the App draws every texture-state pair of the field pass once at start (so no
    frame compiles one later); it draws into a framebuffer of its own: the screen and its binding are untouched."""
    app = make_app(tiny_model)
    app.run_until_idle()
    before = app.read_screen()
    screen = app.window.ctx.fbo
    app.view.field_pass.prime_variants()
    assert app.window.ctx.fbo == screen
    app.frame()
    assert (app.read_screen() == before).all()
