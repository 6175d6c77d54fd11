"""With the model's data set known: live training updates the view without freezing it, the ground-truth comparison
renders from the nearest training camera, and the view snaps to training cameras."""
from __future__ import annotations

import time

import imgui_bundle  # noqa: F401  (before glfw)
import pytest
import torch

from engine.fileformat import load_model
from engine.scenes import make_scene
from fields import make_tiny_model
from viewer_driver import differs, hide_panel, settle


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """6 training views of the demo scene at 24x24 pixels."""
    return make_scene(tmp_path_factory.mktemp("scene"), n_train=6, n_test=1, n_val=1, resolution=24)


@pytest.fixture
def model_with_dataset(tmp_path, scene):
    return make_tiny_model(tmp_path / "withdata.vbnf", metadata={"dataset": str(scene)})


def test_live_training_updates_the_view_and_never_blocks_a_frame(make_app, model_with_dataset, tmp_path):
    app = make_app(model_with_dataset)
    hide_panel(app)
    before = settle(app)
    assert app.state.training.dataset_path == app.state.model.dataset != ""
    app.actions.start_training()
    worst = 0.0
    deadline = time.perf_counter() + 90
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        app.frame()
        worst = max(worst, time.perf_counter() - start)
        if app.state.model.live and len(app.state.training.steps) >= 3:
            break
    assert app.state.model.live, app.state.training.status
    assert app.state.training.running
    assert len(app.state.training.loss) == len(app.state.training.steps) >= 3
    assert worst < 0.5  # training runs in its thread; a frame does a little UI work only
    app.actions.pause_training()
    for _ in range(3):
        app.frame()
    assert not app.state.training.running
    after = settle(app)
    assert differs(before, after)  # the trained snapshot is what the view shows
    saved = tmp_path / "trained.vbnf"
    assert app.actions.save_model(str(saved))
    field = load_model(saved)
    assert field.metadata["train_steps"] >= 1
    app.actions.stop_training()
    app.frame()
    assert not app.state.model.live


def test_training_with_a_bad_data_set_is_one_line(make_app, tiny_model, tmp_path):
    app = make_app(tiny_model)
    app.frame()
    app.state.training.dataset_path = str(tmp_path / "nowhere")
    app.actions.start_training()
    deadline = time.perf_counter() + 20
    while time.perf_counter() < deadline and "nowhere" not in app.state.training.status + app.state.error:
        app.frame()
    said = app.state.error or app.state.training.status  # a missing folder is caught before training starts
    assert "nowhere" in said and "\n" not in said and "type its folder" in said
    assert not app.state.training.running
    app.frame()  # still running, model still shown
    assert app.state.view.label_a


def test_ground_truth_comparison_uses_the_nearest_training_camera(make_app, model_with_dataset):
    app = make_app(model_with_dataset)
    hide_panel(app)
    c = app.state.compare
    c.enabled, c.kind = True, "ground truth"
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline and app.state.view.training_camera < 0:
        app.frame()
    index = app.state.view.training_camera
    assert index >= 0
    settle(app)
    x, y, w, h = app.state.view.rect  # letterboxed to the training images' aspect (square) in the 128x96 window
    assert w == h == 96 and x == 16 and y == 0
    assert app.state.stats.render_size == (96, 96)
    assert app.state.view.label_b.startswith(f"ground truth #{index}")
    assert "PSNR of A" in app.state.view.label_b  # measured against the ground truth
    measured = app.view.side_b.psnr
    view = app.view  # as on a CUDA path, which writes the texture itself and hands over no values: read back
    view._values_a, view._gt_psnr = None, {}
    app.frame()
    assert abs(view.side_b.psnr - measured) < 0.1  # the same PSNR from the texture (RGBA8 here: rounded)
    app.actions.save_comparison()
    settle(app)
    assert "comparison saved" in app.state.message


def test_snap_to_a_training_camera(make_app, model_with_dataset):
    app = make_app(model_with_dataset)
    app.frame()
    app.actions.snap_to_training_camera(2)  # starts loading the data set
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        app.frame()
        before = app.state.camera.key()
        app.actions.snap_to_training_camera(2)
        if app.state.camera.key() != before:
            break
    assert abs(app.state.camera.distance - 4.0) < 1e-3  # the demo scene's cameras sit 4 units from the origin


def test_train_new_runs_the_recipe_from_its_occupancy_phase_to_vq(scene):
    """"Train new" shows the occupancy phase's dense grid from its first step, then the vq grid whose bits the
    budget chose on the pruned octree."""
    from engine.recipe import Recipe, VqBudgetRun
    from engine.train import TrainSettings
    from viewer.training_session import DatasetCache, TrainingSession

    def run(dataset, device):
        return VqBudgetRun(dataset, Recipe(budget_bytes=20_000, steps=20, max_level=4), TrainSettings(batch_rays=64),
                           device)

    session = TrainingSession(None, str(scene), DatasetCache(), new_run=run, snapshot_seconds=0.0)
    try:
        session.start()
        kinds = set()
        deadline = time.perf_counter() + 60
        while "vq" not in kinds and time.perf_counter() < deadline and not session.error:
            snapshot = session.take_snapshot()
            if snapshot is not None:
                kinds.add(snapshot.grid_kind)
            time.sleep(0.01)
        assert session.initial is not None and session.initial[0].grid_kind == "dense", session.error
        assert "vq" in kinds, session.status
        assert "vq phase" in session.status
    finally:
        session.close()


def test_the_training_section_shows_the_device_batch_and_speed(make_app, model_with_dataset, monkeypatch):
    """What the Training section tells a user while training runs: the device and rays per step (and why the CPU,
    when it is the CPU), then steps/s and training's share of the time."""
    from imgui_bundle import imgui
    app = make_app(model_with_dataset)
    drawn = []
    text, header = imgui.text, imgui.collapsing_header
    monkeypatch.setattr(imgui, "text", lambda s, *a: (drawn.append(s), text(s, *a))[1])
    monkeypatch.setattr(imgui, "collapsing_header",  # the user opened the Training section
                        lambda label, *a: True if label == "Training" else header(label, *a))
    app.actions.start_training()
    deadline = time.perf_counter() + 90
    while time.perf_counter() < deadline and not (app.state.training.steps_per_s > 0
                                                   and len(app.state.training.steps) >= 2):
        app.frame()
    drawn.clear()
    app.frame()
    t = app.state.training
    assert f"on {t.device}, {t.batch:,} rays per step" in drawn and t.batch > 0
    if torch.cuda.is_available():
        assert t.device == "cuda"
    else:
        assert t.device == "cpu" and t.device_reason  # why the CPU: no CUDA here
    assert any(s.endswith("% of the time") and "steps/s, training" in s for s in drawn), drawn
    app.actions.stop_training()
    app.frame()
