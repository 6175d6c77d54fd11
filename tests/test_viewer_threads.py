"""No stalls and no busy idling: kernel compiles, model serialisations, prefix loads and bitwidth conversions never
run on the frame thread, an idle loop waits for events, and worker threads wake it.

The CUDA path is stood in for by a texture renderer that must find its "kernel" prepared (as get_kernel would
otherwise compile it inside the frame) and a compile step that takes a while on the KernelCompiler's worker; the
real App, window (GLFW Null platform + EGL), scheduler and CompilingBackend run around them.
"""
from __future__ import annotations

import os
import threading
import time

import imgui_bundle  # noqa: F401  (before glfw)
import glfw
import pytest

import engine.convert
import engine.fileformat
import viewer.field_source
from engine.scenes import make_scene
from fields import make_tiny_model
from viewer_driver import hide_panel, settle
from viewer.kernel_compiler import COMPILING_NOTICE, CompilingBackend, KernelCompiler, variant_key
from viewer.render_paths import DirectBackend, ThreadedBackend, render_values

COMPILE_SECONDS = 0.3


class FakeKernels:
    """Records on which thread each variant was compiled, and any render that would have compiled in the frame."""

    def __init__(self):
        self.compiled: dict[tuple, threading.Thread] = {}
        self.compiled_in_frame: list[tuple] = []

    def prepare(self, field, mode) -> str:
        time.sleep(COMPILE_SECONDS)
        self.compiled[variant_key(field, mode)] = threading.current_thread()
        return "compiled"


class FakeTextureRenderer:
    """A TextureRenderer like the CUDA one: renders (here with torch) into the slot texture inside the frame."""

    def __init__(self, kernels: FakeKernels):
        self.kernels = kernels
        self.renders = 0

    def render_into(self, texture, job) -> None:
        if variant_key(job.field, job.mode) not in self.kernels.compiled:
            self.kernels.compiled_in_frame.append(variant_key(job.field, job.mode))
        texture.write(render_values(job), job.mode)
        self.renders += 1


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("scene"), n_train=4, n_test=1, n_val=1, resolution=16)


def test_no_compile_and_no_serialisation_on_the_frame_thread(make_app, tmp_path, scene, monkeypatch):
    model = make_tiny_model(tmp_path / "m.vbnf", metadata={"dataset": str(scene)})
    serialised_on: list[threading.Thread] = []
    real_save_bytes = engine.fileformat.save_model_bytes

    def recording_save_bytes(*args, **kwargs):
        serialised_on.append(threading.current_thread())
        return real_save_bytes(*args, **kwargs)

    monkeypatch.setattr(engine.fileformat, "save_model_bytes", recording_save_bytes)
    kernels = FakeKernels()
    renderer = FakeTextureRenderer(kernels)
    backend = CompilingBackend(DirectBackend(renderer, "cuda+fake", "test"), ThreadedBackend("fallback"),
                               KernelCompiler(kernels.prepare))
    app = make_app(model, backend=backend, idle_wait=False)
    hide_panel(app)
    frame_thread = threading.current_thread()
    prepared_on: list[threading.Thread] = []  # prefix loads (streaming) and bitwidth conversions, once open
    for module, name in ((viewer.field_source, "load_model_bytes"), (engine.convert, "convert_bits")):
        def recording(*args, _real=getattr(module, name), **kwargs):
            prepared_on.append(threading.current_thread())
            return _real(*args, **kwargs)
        monkeypatch.setattr(module, name, recording)
    # first frames: the variant compiles on its worker; the view is drawn by the torch path meanwhile
    app.frame()
    saw_notice = app.state.stats.compiling
    settle(app)
    assert saw_notice
    s = app.state
    for lod in range(s.model.max_lod + 1):  # slide LOD through every level
        s.lod = lod
        settle(app)
    ladder = list(s.model.ladder_bytes)
    for budget in (ladder[0], ladder[1], None):  # stream the file
        s.byte_budget = budget
        settle(app)
    for bits in (2, 4, 6, None):  # switch bits
        s.bits = bits
        settle(app)
    for mode in ("depth", "normal", "samples", "level", "rgb"):  # cycle the modes
        s.render_mode = mode
        settle(app)
    s.compare.enabled = True  # split view
    settle(app)
    s.compare.enabled = False
    app.actions.start_training()  # live snapshots: their sizes come from the chunk table
    deadline = time.perf_counter() + 180
    while time.perf_counter() < deadline and len(app.state.training.steps) < 2:
        app.frame()
    app.actions.pause_training()  # pausing hands over a snapshot once the running chunk ends
    while time.perf_counter() < deadline and not app.state.model.live:
        app.frame()
    settle(app)
    assert app.state.model.live and app.state.model.size_bytes > 0
    assert kernels.compiled, "no variant was compiled"
    assert all(t is not frame_thread for t in kernels.compiled.values())
    assert kernels.compiled_in_frame == []  # every GPU render found its variant ready
    assert renderer.renders > 0  # and the GPU path did draw once it was
    assert all(t is not frame_thread for t in serialised_on)
    assert len(prepared_on) >= 4 and all(t is not frame_thread for t in prepared_on)
    assert not app.state.stats.compiling


def test_the_compiling_notice_is_shown(make_app, tiny_model):
    kernels = FakeKernels()
    backend = CompilingBackend(DirectBackend(FakeTextureRenderer(kernels), "cuda+fake", "test"),
                               ThreadedBackend("fallback"), KernelCompiler(kernels.prepare))
    app = make_app(tiny_model, backend=backend)
    app.frame()
    app.frame()
    assert app.state.stats.compiling
    assert COMPILING_NOTICE in app.state.status_line()


def test_an_idle_viewer_waits_for_events_and_workers_wake_it(make_app, tiny_model, monkeypatch):
    posted: list[threading.Thread] = []
    real_post = glfw.post_empty_event

    def recording_post():
        posted.append(threading.current_thread())
        real_post()

    monkeypatch.setattr(glfw, "post_empty_event", recording_post)
    app = make_app(tiny_model)
    hide_panel(app)
    settle(app)  # the CPU render thread finished its images: each finish woke the loop
    assert posted and all(t is not threading.current_thread() for t in posted)
    waits = app.waits
    for _ in range(6):  # nothing changes: after a few frames each frame starts by waiting for an event
        app.wake()  # (an event is queued, so the test does not sit out the timeout)
        app.frame()
    assert app.waits > waits  # (a wake-up counts as an event: a few frames are drawn before the next wait)
    app.state.lod = 0  # a change (as the slider makes, waking the loop with its input event)
    app.wake()
    app.frame()  # woken: this frame submits the new render
    waits = app.waits
    app.frame()
    assert app.waits == waits and not app.state.stats.waiting  # renders pending: the loop polls
    settle(app)


def test_warmup_covers_the_bundled_model_and_says_why_it_cannot_run(capsys):
    import torch
    from engine.cli import main
    from engine.cuda.marcher import GpuField, MarchTuning
    from engine.fileformat import load_model
    from viewer.warmup import BUNDLED, variants
    planned = {o for _, o in variants([])}
    gpu = GpuField.from_field(load_model(BUNDLED), "cpu")
    assert {gpu.kernel_options(m, MarchTuning()) for m in ("rgb", "depth", "normal", "samples", "level")} <= planned
    if torch.cuda.is_available():
        return
    assert main(["warmup"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--arch" in err


def test_the_first_launch_warms_the_kernel_cache_once_in_the_background(monkeypatch, tmp_path):
    """On a CUDA machine whose kernel cache has no warmup marker, the viewer starts `vbnf warmup` in a low-priority
    process of its own; once the marker exists (the warmup finished) it starts nothing; without CUDA, nothing."""
    import viewer.warmup as warmup
    started = []

    class FakeProcess:
        def __init__(self, argv, **kwargs):
            started.append(argv)

    marker = tmp_path / "warmup-x.done"
    monkeypatch.setattr(warmup, "target", lambda arch: ("sm_90", True))
    monkeypatch.setattr(warmup, "marker_path", lambda arch: marker)
    monkeypatch.setattr(warmup.subprocess, "Popen", FakeProcess)
    assert isinstance(warmup.start_in_background(), FakeProcess)
    argv = started[-1]
    assert "warmup" in argv and "--quiet" in argv
    assert argv[:3] == ["nice", "-n", "10"] or os.name != "posix"
    marker.write_text("12 variants\n")
    assert warmup.start_in_background() is None and len(started) == 1

    def no_cuda(arch):
        raise RuntimeError("no CUDA device")
    monkeypatch.setattr(warmup, "target", no_cuda)
    marker.unlink()
    assert warmup.start_in_background() is None and len(started) == 1
