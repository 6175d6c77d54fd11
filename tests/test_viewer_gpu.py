"""The viewer's CUDA render path (engine.gpu_render writing the slot textures through a GLTextureTarget) draws the
same field image as its CPU path. Needs CUDA and an EGL GL context on the CUDA device (on a headless NVIDIA server,
put headless-gl/ first on LD_LIBRARY_PATH); skips with the reason otherwise."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from viewer.camera import default_camera
from viewer.field_source import Models
from viewer.field_view import FieldView
from viewer.render_paths import ThreadedBackend, choose_backend
from viewer.state import AppState
from viewer.training_session import DatasetCache

pytestmark = pytest.mark.gpu
W, H = 96, 72


@pytest.fixture(scope="module")
def gpu_ctx():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: the CUDA render path cannot run here")
    import moderngl
    try:
        ctx = moderngl.create_standalone_context(backend="egl", require=330)
    except Exception as e:
        pytest.skip(f"no EGL GL context ({str(e).splitlines()[0]}); put headless-gl/ first on LD_LIBRARY_PATH")
    yield ctx
    ctx.release()


def _settle(view: FieldView, state: AppState, models: Models, datasets: DatasetCache) -> np.ndarray:
    rect = (0, 0, W, H)
    deadline = time.perf_counter() + 120
    while time.perf_counter() < deadline:
        view.update(state, models, datasets, rect, 1.0)
        want = view.wants["a"]
        if view.scheduler.is_final("a", want.key, want.full):
            return view._draw_offscreen((W, H), view._side_image("a"), tuple(state.background))
        time.sleep(0.005)
    raise AssertionError("the view did not settle")


@pytest.mark.parametrize("mode", ["rgb", "depth", "normal"])
def test_cuda_path_draws_what_the_cpu_path_draws(gpu_ctx, tiny_model, mode):
    backend = choose_backend(gpu_ctx)
    if backend.name == "cpu":
        pytest.skip(f"no CUDA render path: {backend.reason}")
    assert backend.name in ("cuda+interop", "cuda+upload")
    models, datasets = Models(), DatasetCache()
    source = models.open(tiny_model)
    field = source.full.field
    state = AppState(lod=field.max_lod, render_mode=mode)
    state.camera = default_camera(field.scene_center, field.scene_half_size)
    gpu_view, cpu_view = FieldView(gpu_ctx, backend), FieldView(gpu_ctx, ThreadedBackend())
    try:
        gpu = _settle(gpu_view, state, models, datasets)
        cpu = _settle(cpu_view, state, models, datasets)
    finally:
        gpu_view.release()
        cpu_view.release()
    diff = np.abs(gpu.astype(int) - cpu.astype(int)).max(axis=2)
    assert (cpu != 255).any()
    assert (diff <= 2).mean() > 0.99, f"{backend.name}: {(diff > 2).sum()} pixels differ, max {diff.max()}"
