"""Shared fixtures: small procedural data sets (made by our own generator) and tiny fields."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.scenes import make_scene

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def toy_scene(tmp_path_factory) -> Path:
    """40 train / 4 val / 6 test views of the demo scene at 64x64."""
    return make_scene(tmp_path_factory.mktemp("toys"), n_train=40, n_test=6, n_val=4, resolution=64)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
