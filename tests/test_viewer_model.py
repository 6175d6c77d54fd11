"""The model as the viewer shows it: LOD slider and bitrate ladder, bitwidth conversion, streaming prefixes, Save.

Settings are changed the way the panel changes them (AppState fields), then frames run."""
from __future__ import annotations

import time

import imgui_bundle  # noqa: F401  (before glfw)

from engine.fileformat import load_model, model_layout
from viewer_driver import differs, hide_panel, settle


def test_lod_slider_changes_the_image_and_the_shown_size(make_app, tiny_model):
    app = make_app(tiny_model)
    hide_panel(app)
    fine = settle(app)
    ladder = model_layout(tiny_model).lod_prefix_bytes
    assert app.state.model.ladder_bytes == ladder
    assert app.state.lod == len(ladder) - 1
    label_fine = app.state.view.label_a
    app.state.lod = 0  # what the LOD slider does
    coarse = settle(app)
    assert differs(fine, coarse)
    assert app.state.view.label_a != label_fine
    assert "LOD 0" in app.state.view.label_a
    assert f"{ladder[0] / 1024:.1f} kB" in app.state.view.label_a
    assert f"{ladder[-1] / 1024:.1f} kB" in label_fine


def frames_until(app, condition, timeout_s: float = 10.0) -> float:
    """Runs frames until condition() holds; returns the seconds it took (fails after timeout_s)."""
    start = time.perf_counter()
    while not condition():
        assert time.perf_counter() - start < timeout_s, "the view did not change"
        app.frame()
    return time.perf_counter() - start


def test_switching_bitwidth_changes_the_model_size_quickly(make_app, tiny_model):
    """The conversion runs beside the frames (FieldSource.prepared): the view keeps drawing and shows the new
    bitwidth within a second."""
    app = make_app(tiny_model)
    hide_panel(app)
    stored = settle(app)
    size4 = app.state.model.size_bytes
    assert size4 == tiny_model.stat().st_size
    app.state.bits = 2  # the bits slider, below the trained 4: merges codebook rows
    assert frames_until(app, lambda: "2 bits" in app.state.view.label_a) < 1.0  # re-quantised within a second
    assert app.state.model.size_bytes < size4
    merged = settle(app)
    assert differs(stored, merged)
    app.state.bits = 6  # above the trained bitwidth: split codebook
    frames_until(app, lambda: "6 bits" in app.state.view.label_a)
    assert app.state.model.size_bytes > size4
    app.state.bits = None
    frames_until(app, lambda: app.state.model.size_bytes == size4)


def test_byte_budget_renders_what_the_prefix_gives(make_app, tiny_model):
    app = make_app(tiny_model)
    hide_panel(app)
    full = settle(app)
    ladder = model_layout(tiny_model).lod_prefix_bytes
    app.state.byte_budget = ladder[1] + 1  # LOD 0 and 1 complete, LOD 2 not
    prefix = settle(app)
    assert app.state.model.max_lod == 1
    assert app.state.model.loaded_bytes == ladder[1] + 1
    assert "LOD 1" in app.state.view.label_a
    assert differs(full, prefix)
    app.state.byte_budget = ladder[0] - 1  # not even LOD 0: the view says so, nothing crashes
    app.frame()
    assert "LOD 0 needs" in app.state.view.notice
    app.state.byte_budget = None
    again = settle(app)
    assert not differs(full, again, 0)


def test_simulate_download_animates_the_budget_to_the_whole_file(make_app, tiny_model):
    app = make_app(tiny_model)
    app.frame()
    app.actions.simulate_download()
    assert app.state.byte_budget == 0
    seen = set()
    deadline = time.perf_counter() + 15
    while app.state.byte_budget is not None and time.perf_counter() < deadline:
        app.frame()
        seen.add(app.state.model.max_lod)
    assert app.state.byte_budget is None  # finished: the whole file
    assert len(seen) >= 2  # coarse LODs were shown on the way


def test_save_never_overwrites_without_asking(make_app, tiny_model, tmp_path):
    app = make_app(tiny_model)
    app.frame()
    app.state.bits = 3
    app.frame()
    target = tmp_path / "saved.vbnf"
    assert app.actions.save_model(str(target))
    saved = load_model(target)
    assert saved.bits == 3
    original = target.read_bytes()
    app.state.bits = 2
    app.frame()
    assert not app.actions.save_model(str(target))  # exists: the panel asks
    assert app.state.confirm_overwrite == str(target)
    for _ in range(3):
        app.frame()  # the confirm dialog is up; the app keeps running
    assert target.read_bytes() == original
    assert app.actions.save_model(str(target), overwrite=True)  # "Overwrite" in the dialog
    assert load_model(target).bits == 2
    assert app.state.confirm_overwrite == ""
    assert app.state.save_path != str(target)  # the next proposal is a new name


def test_save_into_a_missing_folder_is_one_line_and_keeps_the_model(make_app, tiny_model, tmp_path):
    app = make_app(tiny_model)
    app.frame()
    bad = tmp_path / "no" / "such" / "dir" / "x.vbnf"
    assert not app.actions.save_model(str(bad))
    assert app.state.error and "\n" not in app.state.error
    assert app.state.model_path == str(tiny_model)
    app.frame()


def test_the_shown_size_of_a_conversion_is_the_size_of_its_file():
    """The bitrate ladder shown for another bitwidth (worked out from chunk sizes, nothing serialised) is the one the
    saved file has, compressed octree chunks included."""
    import torch
    from engine.convert import convert_bits
    from engine.field import NeuralField
    from engine.fileformat import load_model_bytes, save_model_bytes
    from fields import sphere_shell_octree
    from viewer.field_source import layout_from_field
    nf = NeuralField(sphere_shell_octree(7), 3, "vq", feature_dim=4, bits=5, scene_center=torch.zeros(3),
                     scene_half_size=1.0)
    data = save_model_bytes(nf.freeze())
    stored = model_layout(data)
    assert any(c.coding == "lzma" for c in stored.chunks)
    field = load_model_bytes(data)
    for shown in (convert_bits(field, 3), field.truncated(2)):
        want = model_layout(save_model_bytes(shown))
        got = layout_from_field(shown, stored=stored)
        assert got.lod_prefix_bytes == want.lod_prefix_bytes and got.total_bytes == want.total_bytes
    raw = layout_from_field(convert_bits(field, 3))  # without the stored file: octree chunks uncompressed
    assert raw.total_bytes > model_layout(save_model_bytes(convert_bits(field, 3))).total_bytes
