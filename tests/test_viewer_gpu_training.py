"""On a CUDA machine: the viewer's kernel compiler builds a real march_rays variant off the calling thread, and live
training runs on the GPU with vbnf train's batch and kernels. Skips cleanly without CUDA."""
from __future__ import annotations

import threading
import time

import pytest
import torch

from engine.fileformat import load_model
from engine.scenes import make_scene
from viewer.training_session import DatasetCache, TrainingSession
from viewer.warmup import BUNDLED

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: the viewer's GPU training and kernel compiler cannot run here")


def test_kernel_compiler_builds_the_variant_on_its_worker(monkeypatch):
    from engine.cuda import marcher
    from engine.gpu_render import march_rays
    from engine.cuda.marcher import PinholeCamera
    from viewer.kernel_compiler import KernelCompiler, marcher_prepare
    compiled_on = []
    real = marcher.compile_source

    def recording(*args, **kwargs):
        compiled_on.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(marcher, "compile_source", recording)
    field = load_model(BUNDLED)
    compiler = KernelCompiler(marcher_prepare(torch.device("cuda"), marcher.MarchTuning()))
    try:
        ready = compiler.ready(field, "samples")
        deadline = time.perf_counter() + 300
        while not ready and time.perf_counter() < deadline:
            time.sleep(0.1)
            ready = compiler.ready(field, "samples")
        assert ready, compiler.failed(field, "samples")
    finally:
        compiler.close()
    n = len(compiled_on)
    c2w = torch.eye(4)
    c2w[2, 3] = 3.0
    image = march_rays(field, PinholeCamera(c2w, 40.0, 40.0, 16.0, 16.0, 32, 32), field.max_lod, "samples")
    assert image.shape == (32, 32)
    assert len(compiled_on) == n  # the render found the variant loaded: nothing compiled on this thread
    assert all(t is not threading.current_thread() for t in compiled_on)


def test_live_training_runs_on_the_gpu_with_vbnf_trains_batch(tmp_path):
    from engine.train_cli import CUDA_BATCH
    scene = make_scene(tmp_path / "scene", n_train=8, n_test=1, n_val=1, resolution=32)
    session = TrainingSession(load_model(BUNDLED), str(scene), DatasetCache(), device="cuda", share=1.0)
    try:
        session.start()
        deadline = time.perf_counter() + 300
        while time.perf_counter() < deadline and not session.error and len(session.history()) < 20:
            time.sleep(0.1)
        assert not session.error, session.error
        assert session.settings.batch_rays == CUDA_BATCH
        assert session.trainer.device.type == "cuda" and session.trainer.fused
        steps_per_s, share = session.rate()
        assert steps_per_s > 0 and 0 < share <= 1.0
    finally:
        session.close()
