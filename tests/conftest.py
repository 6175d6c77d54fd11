"""Shared fixtures: small procedural data sets (made by our own generator), tiny models and headless viewer apps.

Plain helpers live in modules without the test_ prefix: fields.py (octrees, tiny models), viewer_driver.py
(settling and input injection for the viewer tests)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.scenes import make_scene
from fields import make_tiny_model

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def toy_scene(tmp_path_factory) -> Path:
    """40 train / 4 val / 6 test views of the demo scene at 64x64."""
    return make_scene(tmp_path_factory.mktemp("toys"), n_train=40, n_test=6, n_val=4, resolution=64)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def interrupt_training(monkeypatch):
    """interrupt_training(n): the n-th call of Trainer.step from now raises KeyboardInterrupt (what Ctrl-C does
    while a run trains); the other calls train as usual."""
    from engine.train import Trainer
    original = Trainer.step

    def arm(at_call: int) -> None:
        calls = {"n": 0}

        def step(self, n=1):
            calls["n"] += 1
            if calls["n"] == at_call:
                raise KeyboardInterrupt
            return original(self, n)
        monkeypatch.setattr(Trainer, "step", step)
    return arm


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A small 4-bit vq model file (fields.make_tiny_model), shared by the whole run."""
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny.vbnf")


@pytest.fixture
def make_app(tmp_path):
    """Factory: make_app(model, width, height) -> a headless App; closed after the test."""
    from viewer.app import App
    from viewer_driver import H, W
    apps = []

    def make(model: Path | None, width: int = W, height: int = H, **kwargs):
        app = App(str(model) if model else None, width, height, headless=True, output_dir=str(tmp_path / "out"),
                  **kwargs)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()
