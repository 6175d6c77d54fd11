"""draw_ui(state, actions): the ImGui panel and the overlays on the view (comparison labels, notices, errors).

The panel edits AppState fields directly and calls Actions for commands; it keeps no state of its own (ImGui keeps
which headers are open). Every section is one small function.
"""
from __future__ import annotations

import numpy as np
from imgui_bundle import imgui, implot

from engine.modes import MAX_BITS, MIN_BITS, RENDER_MODES
from viewer.actions import Actions
from engine.colormap import turbo
from viewer.compare import format_bytes
from viewer.state import COMPARE_KINDS, AppState

PANEL_WIDTH = 340.0
SCREENSHOT_SCALES = (1, 2, 4)
RED = imgui.ImVec4(1.0, 0.35, 0.3, 1.0)
GREEN = imgui.ImVec4(0.5, 0.9, 0.5, 1.0)
GREY = imgui.ImVec4(0.7, 0.7, 0.7, 1.0)
CONFIRM_POPUP = "Overwrite file?"


def _note(text: str) -> None:
    """A grey, wrapped line of explanation."""
    imgui.push_style_color(imgui.Col_.text, GREY)
    imgui.text_wrapped(text)
    imgui.pop_style_color()


def _u32(r: float, g: float, b: float, a: float = 1.0) -> int:
    return imgui.color_convert_float4_to_u32(imgui.ImVec4(r, g, b, a))


def draw_ui(state: AppState, actions: Actions) -> None:
    """The whole UI of one frame (call between ImGui's new_frame and render)."""
    draw_overlays(state)
    if not state.show_panel:
        state.view.panel_width = 0.0
        return
    display = imgui.get_io().display_size
    # Docked at the left, full height; its width can be dragged. The field is drawn right of it.
    imgui.set_next_window_pos(imgui.ImVec2(0, 0), imgui.Cond_.always)
    imgui.set_next_window_size(imgui.ImVec2(min(PANEL_WIDTH, display.x), display.y), imgui.Cond_.first_use_ever)
    imgui.set_next_window_size_constraints(imgui.ImVec2(min(220.0, display.x), display.y),
                                           imgui.ImVec2(max(display.x * 0.7, 220.0), display.y))
    expanded, _ = imgui.begin("vbnf", None, imgui.WindowFlags_.no_move)
    state.view.panel_width = imgui.get_window_width() if expanded else 0.0
    if expanded:
        section_model(state, actions)
        section_lod(state)
        section_bits(state)
        section_streaming(state, actions)
        section_view(state, actions)
        section_compare(state, actions)
        section_screenshot(state, actions)
        section_training(state, actions)
        section_stats(state)
    imgui.end()
    confirm_overwrite(state, actions)
    if actions.browser is not None:
        actions.browser.draw()


# -- overlays ------------------------------------------------------------------------------------------------------


def _boxed_text(draw, x: float, y: float, text: str, color: int, right: bool = False) -> None:
    size = imgui.calc_text_size(text)
    if right:
        x -= size.x + 8
    draw.add_rect_filled(imgui.ImVec2(x, y), imgui.ImVec2(x + size.x + 8, y + size.y + 6), _u32(0.08, 0.08, 0.08, 0.8))
    draw.add_text(imgui.ImVec2(x + 4, y + 3), color, text)


def draw_overlays(state: AppState) -> None:
    """Comparison labels at the top of each side, the notice in the middle, the error line at the bottom, all
    within the field's part of the window."""
    draw = imgui.get_foreground_draw_list()
    x, y, w, h = state.view.rect
    white = _u32(1, 1, 1)
    line = imgui.get_text_line_height()
    if state.compare.enabled and state.view.label_b:
        divider_x = x + state.compare.divider * w
        _boxed_text(draw, x + 8, y + 8, "A: " + state.view.label_a, white)
        _boxed_text(draw, x + w - 8, y + line + 20, "B: " + state.view.label_b, white, right=True)
        draw.add_line(imgui.ImVec2(divider_x, y), imgui.ImVec2(divider_x, y + 6), _u32(1, 0.8, 0.1), 3.0)
    if state.view.notice:
        text_w = imgui.calc_text_size(state.view.notice).x
        _boxed_text(draw, x + max(8.0, (w - text_w) / 2), y + h / 2, state.view.notice, _u32(1, 0.85, 0.4))
    if state.show_help:
        draw_help(state, draw, line)
    if not state.show_panel:  # Tab: a clean view (what a screenshot holds), except for an error
        if state.error:
            _boxed_text(draw, x + 8, y + h - line - 14, state.error, _u32(1, 0.4, 0.35))
        return
    draw_status_line(state, draw, line)
    draw_legend(state, draw, line)


LEGEND_UNITS = {"depth": "scene units", "samples": "samples per ray", "level": "octree level"}
HELP_LINES = ("left drag: orbit", "right / middle drag: pan", "wheel: zoom", "drag the divider: move the split",
              "R: reset the camera", "F12 or P: screenshot", "Tab: show / hide the panel",
              "F1 or ?: this help", "Esc: close help, dismiss the error", "drop a .vbnf file: open it")


def draw_status_line(state: AppState, draw, line: float) -> None:
    """One fixed line at the bottom of the view: the error (red), the kernel compile (yellow) or the last message
    (green). It never moves a widget and is always in sight."""
    x, y, w, h = state.view.rect
    text = state.status_line()
    if not text:
        return
    color = _u32(1, 0.4, 0.35) if state.error else _u32(1, 0.85, 0.4) if state.stats.compiling else _u32(0.5, 0.9, 0.5)
    if state.error:
        text += "  (Esc dismisses)"
    _boxed_text(draw, x + 8, y + h - line - 14, text, color)


def draw_legend(state: AppState, draw, line: float) -> None:
    """The colour bar of a scalar mode (depth, samples, level) with its value range, at the view's top right."""
    legend = state.view.legend
    if legend is None:
        return
    mode, lo, hi = legend
    x, y, w, h = state.view.rect
    bar_w, bar_h = min(200.0, w * 0.4), 12.0
    x0, y0 = x + w - bar_w - 12, y + 12 + (line + 14 if state.compare.enabled and state.view.label_b else 0)
    draw.add_rect_filled(imgui.ImVec2(x0 - 6, y0 - 4), imgui.ImVec2(x0 + bar_w + 6, y0 + bar_h + line + 10),
                         _u32(0.08, 0.08, 0.08, 0.8))
    n = 32
    colours = turbo(np.linspace(0.0, 1.0, n + 1))
    for i in range(n):
        c0, c1 = colours[i], colours[i + 1]
        draw.add_rect_filled_multi_color(imgui.ImVec2(x0 + bar_w * i / n, y0), imgui.ImVec2(x0 + bar_w * (i + 1) / n,
                                         y0 + bar_h), _u32(*c0), _u32(*c1), _u32(*c1), _u32(*c0))
    fmt = (lambda v: f"{v:.0f}") if mode in ("samples", "level") else (lambda v: f"{v:.2f}")
    white = _u32(1, 1, 1)
    draw.add_text(imgui.ImVec2(x0, y0 + bar_h + 3), white, fmt(lo))
    right = fmt(hi)
    draw.add_text(imgui.ImVec2(x0 + bar_w - imgui.calc_text_size(right).x, y0 + bar_h + 3), white, right)
    title = f"{mode} ({LEGEND_UNITS.get(mode, '')})"
    draw.add_text(imgui.ImVec2(x0 + (bar_w - imgui.calc_text_size(title).x) / 2, y0 + bar_h + 3), white, title)


def draw_help(state: AppState, draw, line: float) -> None:
    """The keys, over the middle of the view."""
    x, y, w, h = state.view.rect
    width = max(imgui.calc_text_size(t).x for t in HELP_LINES) + 16
    x0, y0 = x + max(8.0, (w - width) / 2), y + max(8.0, (h - len(HELP_LINES) * (line + 2)) / 2)
    draw.add_rect_filled(imgui.ImVec2(x0, y0), imgui.ImVec2(x0 + width, y0 + len(HELP_LINES) * (line + 2) + 12),
                         _u32(0.08, 0.08, 0.08, 0.9))
    for i, text in enumerate(HELP_LINES):
        draw.add_text(imgui.ImVec2(x0 + 8, y0 + 6 + i * (line + 2)), _u32(1, 1, 1), text)


# -- sections ------------------------------------------------------------------------------------------------------


def section_model(state: AppState, actions: Actions) -> None:
    if not imgui.collapsing_header("Model", imgui.TreeNodeFlags_.default_open):
        return
    m = state.model
    imgui.text(f"{m.name or '(none)'}  {format_bytes(m.file_bytes)}" + ("  [live training]" if m.live else ""))
    imgui.set_next_item_width(-70)
    entered, state.open_path = imgui.input_text_with_hint("##open", "path/to/model.vbnf", state.open_path,
                                                          imgui.InputTextFlags_.enter_returns_true)
    imgui.same_line()
    if imgui.button("Open") or entered:
        actions.request_open(state.open_path)
    if imgui.button("Browse..."):
        actions.browse_for_model()
    imgui.same_line()
    _note("or drop a .vbnf file on the window")


def section_lod(state: AppState) -> None:
    if not imgui.collapsing_header("Level of detail", imgui.TreeNodeFlags_.default_open):
        return
    m = state.model
    top = max(m.n_lods - 1, 0)
    changed, lod = imgui.slider_int("LOD", min(state.lod, top), 0, top)
    if changed:
        state.lod = lod
    if state.lod > m.max_lod:
        imgui.text_colored(RED, f"the loaded prefix holds LOD 0..{m.max_lod}; showing LOD {m.max_lod}")
    flags = imgui.TableFlags_.borders_inner_h | imgui.TableFlags_.row_bg | imgui.TableFlags_.sizing_stretch_prop
    if m.ladder_bytes and imgui.begin_table("ladder", 3, flags):
        imgui.table_setup_column("LOD")
        imgui.table_setup_column("file prefix")
        imgui.table_setup_column("PSNR")
        imgui.table_headers_row()
        for k, nbytes in enumerate(m.ladder_bytes):
            imgui.table_next_row()
            imgui.table_set_column_index(0)
            if imgui.selectable(f"{k}##lod{k}", k == min(state.lod, m.max_lod),
                                imgui.SelectableFlags_.span_all_columns)[0]:
                state.lod = k
            imgui.table_set_column_index(1)
            imgui.text(format_bytes(nbytes))
            imgui.table_set_column_index(2)
            imgui.text(f"{m.ladder_psnr[k]:.2f} dB" if k in m.ladder_psnr else "-")
        imgui.end_table()


def section_bits(state: AppState) -> None:
    if not imgui.collapsing_header("Codebook bitwidth", imgui.TreeNodeFlags_.default_open):
        return
    m = state.model
    if m.trained_bits is None:
        _note("dense grid: no codebook")
        return
    bits = state.bits if state.bits is not None else m.trained_bits
    imgui.begin_disabled(m.live)
    changed, bits = imgui.slider_int("bits", bits, MIN_BITS, MAX_BITS, f"%d (trained {m.trained_bits})")
    imgui.end_disabled()
    if changed:
        state.bits = None if bits == m.trained_bits else bits
    imgui.text(f"model size at b={bits}: {format_bytes(m.size_bytes)}")
    if bits > m.trained_bits and not m.live:
        _note("above the trained b: split codebook; Start training to refine it")
    if m.live:
        _note("showing the live training snapshot")


def section_streaming(state: AppState, actions: Actions) -> None:
    if not imgui.collapsing_header("Streaming"):
        return
    m = state.model
    if m.live:
        _note("streaming applies to the file (not to a training snapshot)")
        return
    budget = m.file_bytes if state.byte_budget is None else state.byte_budget
    changed, budget = imgui.slider_int("bytes", budget, 0, max(m.file_bytes, 1))
    if changed:
        state.byte_budget = None if budget >= m.file_bytes else budget
        state.download_bytes_per_s = 0.0
    imgui.progress_bar(m.loaded_bytes / max(m.file_bytes, 1), imgui.ImVec2(-1, 0),
                       f"{format_bytes(m.loaded_bytes)} of {format_bytes(m.file_bytes)}: LOD 0..{m.max_lod}")
    if imgui.button("Simulate download"):
        actions.simulate_download()
    imgui.same_line()
    if imgui.button("Whole file"):
        state.byte_budget = None
        state.download_bytes_per_s = 0.0


def section_view(state: AppState, actions: Actions) -> None:
    if not imgui.collapsing_header("View", imgui.TreeNodeFlags_.default_open):
        return
    modes = list(RENDER_MODES)
    changed, index = imgui.combo("mode", modes.index(state.render_mode), modes)
    if changed:
        state.render_mode = modes[index]
    changed, color = imgui.color_edit3("background", list(state.background))
    if changed:
        state.background = tuple(float(c) for c in color)
    changed, fov = imgui.slider_float("field of view", state.camera.fov_y_deg, 10.0, 120.0, "%.0f deg")
    if changed:
        state.camera.fov_y_deg = fov
    changed, fps = imgui.slider_float("target fps", state.target_fps, 5.0, 120.0, "%.0f")
    if changed:
        state.target_fps = fps
    if imgui.button("Reset camera (R)"):
        actions.reset_camera()
    if state.model.dataset or state.training.dataset_path:
        imgui.same_line()
        if imgui.button("Snap to training camera"):
            actions.snap_to_training_camera(max(state.view.training_camera, 0))


def section_compare(state: AppState, actions: Actions) -> None:
    if not imgui.collapsing_header("Compare"):
        return
    c = state.compare
    _, c.enabled = imgui.checkbox("split view", c.enabled)
    kinds = list(COMPARE_KINDS)
    changed, index = imgui.combo("side B", kinds.index(c.kind), kinds)
    if changed:
        c.kind = kinds[index]
    if c.kind == "lod":
        _, c.lod_b = imgui.slider_int("LOD B", c.lod_b, 0, max(state.model.n_lods - 1, 0))
    elif c.kind == "bits":
        _, c.bits_b = imgui.slider_int("bits B", c.bits_b, MIN_BITS, MAX_BITS)
    elif c.kind == "model":
        entered, path = imgui.input_text_with_hint("model B", "other.vbnf", c.model_b_path,
                                                   imgui.InputTextFlags_.enter_returns_true)
        if entered:
            c.model_b_path = path
        elif path != c.model_b_path and not imgui.is_item_active():
            c.model_b_path = path
    else:
        _note("the view snaps to the nearest training camera")
    _, c.divider = imgui.slider_float("divider", c.divider, 0.0, 1.0)
    if imgui.button("Save comparison"):
        actions.save_comparison()


def section_screenshot(state: AppState, actions: Actions) -> None:
    if not imgui.collapsing_header("Screenshot"):
        return
    labels = [f"{s}x" for s in SCREENSHOT_SCALES]
    current = SCREENSHOT_SCALES.index(state.screenshot_scale) if state.screenshot_scale in SCREENSHOT_SCALES else 0
    changed, index = imgui.combo("resolution", current, labels)
    if changed:
        state.screenshot_scale = SCREENSHOT_SCALES[index]
    imgui.set_next_item_width(-90)
    _, state.output_dir = imgui.input_text("##outdir", state.output_dir)
    if imgui.is_item_hovered():
        imgui.set_tooltip("output folder: screenshots, comparisons and proposed model names go here")
    imgui.same_line()
    if imgui.button("Browse##outdir"):
        actions.browse("output")
    if imgui.button("Screenshot (F12)"):
        actions.screenshot()


def section_training(state: AppState, actions: Actions) -> None:
    if not imgui.collapsing_header("Training"):
        return
    t = state.training
    imgui.set_next_item_width(-90)
    _, t.dataset_path = imgui.input_text_with_hint("##dataset", "data set folder or transforms.json", t.dataset_path)
    imgui.same_line()
    if imgui.button("Browse##dataset"):
        actions.browse("dataset")
    if not t.dataset_path:
        _note("choose the data set this model was trained on (for training and the ground-truth view)")
    if t.running:
        if imgui.button("Pause"):
            actions.pause_training()
    elif imgui.button("Start"):
        actions.start_training()
    imgui.same_line()
    if imgui.button("Train new"):
        actions.train_new()
    if imgui.is_item_hovered():
        imgui.set_tooltip("a new model on this data set, with vbnf train's trainer and defaults")
    imgui.same_line()
    imgui.begin_disabled(not state.model.live)
    if imgui.button("Discard training"):
        actions.stop_training()
    imgui.end_disabled()
    imgui.text(f"on {t.device}, {t.batch:,} rays per step")
    if t.device_reason:
        _note(t.device_reason)
    _, t.full_speed = imgui.checkbox("train at full speed", t.full_speed)
    if imgui.is_item_hovered():
        imgui.set_tooltip("training gets all the time; the view refreshes a few times a second")
    if t.running or t.steps_per_s > 0:
        imgui.text(f"{t.steps_per_s:.1f} steps/s, training {t.share * 100:.0f}% of the time")
    imgui.text(t.status or " ")  # one line, always: the widgets below never move
    _, state.save_path = imgui.input_text("##save", state.save_path)
    imgui.same_line()
    if imgui.button("Save"):
        actions.save_model()
    if len(t.steps) > 1:
        steps = np.asarray(t.steps, np.float64)
        for title, values in (("loss", t.loss), ("PSNR (dB)", t.psnr)):
            if implot.begin_plot(title, imgui.ImVec2(-1, 120), implot.Flags_.no_legend):
                implot.setup_axes("step", "", implot.AxisFlags_.auto_fit, implot.AxisFlags_.auto_fit)
                implot.plot_line(title, steps, np.asarray(values, np.float64))
                implot.end_plot()


def section_stats(state: AppState) -> None:
    if not imgui.collapsing_header("Stats", imgui.TreeNodeFlags_.default_open):
        return
    s = state.stats
    imgui.text(f"frame {s.frame_ms:.1f} ms  ({s.fps:.0f} fps)")
    imgui.text(f"render {s.render_size[0]}x{s.render_size[1]} of {s.view_size[0]}x{s.view_size[1]}"
               f"  {s.render_ms:.0f} ms" + ("  refining..." if s.refining else ""))
    imgui.text(f"render path: {s.render_path}")
    if s.render_path_reason:
        _note(s.render_path_reason)
    if s.render_path_detail:
        _note(s.render_path_detail)
    if s.gpu_memory:
        imgui.text(f"GPU memory: {s.gpu_memory}")


def confirm_overwrite(state: AppState, actions: Actions) -> None:
    """The modal asking before Save replaces an existing file."""
    if state.confirm_overwrite and not imgui.is_popup_open(CONFIRM_POPUP):
        imgui.open_popup(CONFIRM_POPUP)
    opened, _ = imgui.begin_popup_modal(CONFIRM_POPUP, None, imgui.WindowFlags_.always_auto_resize)
    if not opened:
        return
    imgui.text(f"{state.confirm_overwrite} exists. Replace it?")
    if imgui.button("Overwrite"):
        actions.save_model(state.confirm_overwrite, overwrite=True)
        imgui.close_current_popup()
    imgui.same_line()
    if imgui.button("Cancel"):
        state.confirm_overwrite = ""
        state.message = "not saved: choose another name"
        imgui.close_current_popup()
    if not state.confirm_overwrite:
        imgui.close_current_popup()
    imgui.end_popup()
