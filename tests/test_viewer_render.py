"""The pieces under the frame loop, without a window: orbit camera math, the adaptive render scale, progressive
refinement, and the render thread dropping a stale full-resolution render when the view moves on."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from engine.cameras import image_rays
from viewer.camera import OrbitCamera, camera_from_c2w, default_camera, nearest_camera
from viewer.field_source import FieldSource
from viewer.render_paths import RenderJob, ThreadedBackend, render_values
from viewer.scheduler import ResolutionController, refined_scale


def test_orbit_camera_looks_at_its_target():
    cam = OrbitCamera((0.1, 0.2, 0.3), 4.0, 30.0, 20.0, 40.0)
    c2w = cam.c2w()
    eye = c2w[:3, 3].double()
    assert abs(float((eye - torch.tensor(cam.target, dtype=torch.float64)).norm()) - 4.0) < 1e-5
    origins, dirs = image_rays(cam.cameras(9, 7), 0)
    centre = dirs[3 * 9 + 4]  # the middle pixel's ray points at the target
    to_target = torch.tensor(cam.target) - origins[0]
    assert torch.allclose(centre, to_target / to_target.norm(), atol=1e-5)
    assert c2w[2, 1] > 0  # world +z is up on screen


def test_orbit_pan_zoom_and_snap_round_trip():
    cam = default_camera(torch.zeros(3), 1.5)
    key = cam.key()
    cam.orbit(10, 0)
    assert cam.azimuth_deg != 45.0 and cam.key() != key
    cam.orbit(0, 1e6)
    assert cam.elevation_deg == 89.0  # clamped, never flips over the pole
    before = cam.target
    cam.pan(10, 0, 100)
    right = cam.c2w()[:3, 0]
    moved = torch.tensor(cam.target) - torch.tensor(before)
    assert float(moved @ right) < 0 and abs(float(moved @ cam.c2w()[:3, 2])) < 1e-6  # dragging right: scene follows
    d = cam.distance
    cam.zoom(1)
    assert cam.distance == pytest.approx(d * 0.9)
    snap = camera_from_c2w(cam.c2w(), cam.target, cam.fov_y_deg)
    assert torch.allclose(snap.c2w(), cam.c2w(), atol=1e-4)


def test_nearest_camera_prefers_position_and_direction():
    cams = [OrbitCamera((0, 0, 0), 4.0, az, 10.0).cameras(8, 8) for az in (0.0, 90.0, 180.0)]
    from engine.cameras import make_cameras
    both = make_cameras(torch.stack([c.c2w[0] for c in cams]), 8, 8, 4, 4, 8, 8)
    view = OrbitCamera((0, 0, 0), 5.0, 80.0, 15.0).c2w()
    assert nearest_camera(both, view[:3, 3], -view[:3, 2]) == 1


def test_render_scale_adapts_to_the_target_frame_rate():
    rc = ResolutionController()
    assert rc.interactive_scale(10_000, 60, 1 / 16) == 1 / 16  # nothing measured yet: the lowest
    rc.observe(1000, 0.01)  # 10 us per pixel
    full = 1_000_000  # a 10 s full-resolution render
    scale = rc.interactive_scale(full, 60, 1 / 64)
    assert scale * scale * full * 1e-5 <= 1 / 60 + 1e-9  # fits one frame at 60 fps
    assert rc.interactive_scale(full, 5, 1 / 64) > scale  # a lower target allows more pixels
    assert rc.interactive_scale(100, 60, 1 / 16) == 1.0
    steps, s = [], 1 / 16
    while s < 1.0:
        s = refined_scale(s)
        steps.append(s)
    assert steps == [1 / 8, 1 / 4, 1 / 2, 1.0]


def _job(source: FieldSource, slot: str, width: int, height: int, azimuth: float = 45.0) -> RenderJob:
    field = source.full.field
    cam = default_camera(field.scene_center, field.scene_half_size)
    cam.azimuth_deg = azimuth
    return RenderJob(slot, field, source.full.version, cam.cameras(width, height), cam.key(), width, height,
                     field.max_lod, "rgb", (1.0, 1.0, 1.0))


def test_banded_render_equals_one_render_image(tiny_model):
    from engine.render import render_image
    source = FieldSource.open(tiny_model)
    job = _job(source, "a", 150, 70)  # bands of 54 rows: two of them, the last one short
    origins, dirs = image_rays(job.cameras, 0, 150, 70)
    whole = render_image(job.field, origins, dirs, 150, 70, job.lod, "rgb", (1.0, 1.0, 1.0)).numpy()
    assert np.allclose(render_values(job), whole, atol=1e-5)


def test_a_newer_job_cancels_a_running_full_resolution_render(tiny_model):
    source = FieldSource.open(tiny_model)
    backend = ThreadedBackend()
    textures = {"a": _Sink()}
    try:
        backend.submit(_job(source, "a", 2048, 1536))  # many seconds on a CPU
        time.sleep(0.3)
        backend.submit(_job(source, "a", 32, 24, azimuth=90.0))
        done = []
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline and not done:
            done = backend.collect(textures)
            time.sleep(0.01)
        assert [(d.job.width, d.job.height) for d in done] == [(32, 24)]
        assert not backend.busy()
        assert textures["a"].shapes == [(24, 32, 4)]
    finally:
        backend.close()


def test_a_failed_cpu_render_is_reported_and_the_texture_keeps_its_image(tiny_model, monkeypatch):
    import viewer.render_paths as render_paths

    def broken(job, should_stop=None):
        raise RuntimeError("out of memory\nsecond line")
    monkeypatch.setattr(render_paths, "render_values", broken)
    source = FieldSource.open(tiny_model)
    backend = ThreadedBackend(rgb8=True)
    textures = {"a": _Sink()}
    try:
        backend.submit(_job(source, "a", 32, 24))
        done = []
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline and not done:
            done = backend.collect(textures)  # must not try to upload the failure
            time.sleep(0.01)
        assert [d.error for d in done] == ["render failed: RuntimeError: out of memory"]
        assert textures["a"].shapes == []
    finally:
        backend.close()


class _Sink:
    """Stands in for a FieldTexture (no GL here): records what was uploaded."""

    def __init__(self):
        self.shapes = []

    def upload(self, rgba, mode):
        self.shapes.append(rgba.shape)


def test_direct_backend_reports_how_frames_reach_the_texture():
    from viewer.render_paths import DirectBackend, EngineTextureRenderer

    class Target:
        def describe(self):
            return "CUDA-GL interop 'external'"

    renderer = EngineTextureRenderer(None, None)
    backend = DirectBackend(renderer, "cuda+interop", "test")
    assert backend.detail() is None  # nothing rendered yet
    renderer._targets[1] = Target()
    assert backend.detail() == "CUDA-GL interop 'external'"
