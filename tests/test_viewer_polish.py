"""Everyday things: saves go to the chosen folder, data set paths are stored resolved, a chooser that works without
a system file dialog, the legend of the scalar modes, the keys overlay, and "Train new" from a data set folder."""
from __future__ import annotations

import os
import time
from pathlib import Path

import imgui_bundle  # noqa: F401  (before glfw)
import glfw
import pytest

from engine.scenes import make_scene
from fields import make_tiny_model
from viewer_driver import hide_panel, press_key, settle


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("scene"), n_train=4, n_test=1, n_val=1, resolution=16)


def test_save_goes_to_the_output_folder_not_beside_the_model(make_app, tiny_model, tmp_path):
    app = make_app(tiny_model)
    out = Path(app.state.output_dir)
    assert Path(app.state.save_path).parent == out
    assert Path(app.state.save_path).parent != tiny_model.parent
    chosen = tmp_path / "chosen"
    app.actions.set_output_dir(str(chosen))
    assert chosen.is_dir() and Path(app.state.save_path).parent == chosen.resolve()


def test_a_relative_data_set_path_is_resolved_from_the_model_folder(make_app, tmp_path, scene, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    os.symlink(scene, folder / "data")
    model = make_tiny_model(folder / "m.vbnf", metadata={"dataset": "data"})
    monkeypatch.chdir(tmp_path)  # opened from another folder
    app = make_app(model)
    assert app.state.training.dataset_path == str((folder / "data").resolve())
    assert Path(app.state.training.dataset_path).is_absolute()


def test_the_chooser_works_without_a_system_dialog(make_app, tiny_model, tmp_path, monkeypatch):
    import viewer.actions
    monkeypatch.setattr(viewer.actions, "system_dialog_available", lambda: False)
    other = make_tiny_model(tmp_path / "other.vbnf", seed=5)
    app = make_app(tiny_model)
    app.actions.browse("model")
    browser = app.actions.browser
    assert browser is not None
    browser.enter(tmp_path)
    app.frame()  # drawn as an ImGui window
    dirs, files = browser.entries()
    assert "other.vbnf" in files
    browser.choose(tmp_path / "other.vbnf")
    app.frame()
    assert app.actions.browser is None
    settle(app)  # the chosen file is read on a worker thread
    assert app.models.current.path == Path(str(other.resolve()))


def test_scalar_modes_have_a_legend_and_f1_shows_the_keys(make_app, tiny_model):
    app = make_app(tiny_model)
    hide_panel(app)
    settle(app)
    assert app.state.view.legend is None
    app.state.render_mode = "depth"
    settle(app)
    mode, lo, hi = app.state.view.legend
    assert mode == "depth" and lo < hi
    press_key(app, glfw.KEY_F1)
    assert app.state.show_help
    press_key(app, glfw.KEY_ESCAPE)
    assert not app.state.show_help
    from imgui_bundle import imgui
    imgui.backends.glfw_char_callback(app.window.address, ord("?"))  # '?' as typed, on any keyboard layout
    app.frame()
    app.frame()
    assert app.state.show_help


def test_train_new_shows_a_model_growing_from_the_data_set(make_app, tiny_model, scene):
    app = make_app(tiny_model)
    first = app.models.current
    app.actions.train_new(str(scene))
    deadline = time.perf_counter() + 120
    while time.perf_counter() < deadline:
        app.frame()
        if app.models.current is not first and app.state.model.live and len(app.state.training.steps) >= 2:
            break
    assert app.models.current is not first, app.state.training.status or app.state.error
    assert app.state.model.live and app.state.training.running
    assert Path(app.state.save_path).parent == Path(app.state.output_dir)
    app.actions.pause_training()
    settle(app)
    saved = Path(app.state.output_dir) / "new.vbnf"
    assert app.actions.save_model(str(saved))
    from engine.fileformat import load_model
    assert load_model(saved).metadata["train_steps"] >= 1
