"""How a field image gets into a FieldTexture: the render paths and the render thread.

One interface, `render_into(texture, job)`: render `job` and leave its values in `texture`. Two paths:
- the torch reference renderer (engine/render.render_image) on the CPU, uploading into the texture; it is slow, so the
  app runs it through `ThreadedBackend` (a render thread: the frame never waits for it);
- the CUDA marcher of engine/gpu_render writing straight into the texture (interop) or through an upload; it is fast,
  so `DirectBackend` calls it inside the frame.
`choose_backend()` takes the path engine.render_policy.choose_renderer picks and imports engine.gpu_render lazily.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch

from engine.cameras import Cameras, image_rays
from engine.field import InferenceField
from engine.render import render_image
from engine.colormap import field_value_range
from viewer.gl_resources import FieldTexture, texels


@dataclass(frozen=True)
class RenderJob:
    """One image to render; `key` names what the image depends on (the field by its version)."""

    slot: str
    """Which texture it goes to: "a", "b" (comparison side), "shot" (a screenshot)."""
    field: InferenceField
    """The field to render (never mutated by the viewer)."""
    field_version: int
    """Changes whenever `field` is another field."""
    cameras: Cameras
    """One camera (index 0), its intrinsics for width x height."""
    view_key: tuple
    """Hashable description of the camera (OrbitCamera.key() or a training camera's index)."""
    width: int
    """Image width, pixels."""
    height: int
    """Image height, pixels."""
    lod: int
    """LOD (clamped to the field's)."""
    mode: str
    """Render mode (engine.render.RENDER_MODES)."""
    background: tuple[float, float, float]
    """Background RGB in [0,1]."""

    @property
    def key(self) -> tuple:
        """What the image shows, independent of its resolution."""
        return (self.field_version, self.view_key, self.lod, self.mode, self.background)

    @property
    def value_range(self) -> tuple[float, float]:
        """The range scalar modes map onto the colormap (engine.colormap.field_value_range)."""
        return field_value_range(self.field, self.mode, self.cameras.c2w[0, :3, 3])


@dataclass
class RenderDone:
    """A finished job: its values are in the slot's texture (and in `values` on the CPU path)."""

    job: RenderJob
    seconds: float
    """Render time, seconds (excluding the upload)."""
    values: np.ndarray | None = None
    """float32 [H,W,3] or [H,W] render values (None when the GPU wrote the texture directly)."""
    texels: np.ndarray | None = None
    """`values` packed for FieldTexture.upload on the render thread (gl_resources.texels), or None."""
    error: str = ""
    """One line when the render failed (the texture keeps its previous image)."""


class Cancelled(Exception):
    """A render was abandoned because a newer job for its slot arrived."""


BAND_RAYS = 1 << 13  # rays per band: the render thread checks for a newer job between bands


def render_values(job: RenderJob, should_stop: Callable[[], bool] | None = None) -> np.ndarray:
    """The torch reference renderer, in bands of rows: float32 [H,W,3] (rgb, normal) or [H,W] (depth, samples,
    level). Raises Cancelled between bands once `should_stop()` is true (a full-resolution CPU render can take a
    minute; a camera move must not wait for it)."""
    cams = job.cameras
    origins, dirs = image_rays(cams, 0, job.width, job.height)
    device = job.field.device
    rows = max(1, BAND_RAYS // job.width)
    bands = []
    with torch.no_grad():
        for y0 in range(0, job.height, rows):
            if should_stop is not None and should_stop():
                raise Cancelled
            y1 = min(job.height, y0 + rows)
            part = slice(y0 * job.width, y1 * job.width)
            bands.append(render_image(job.field, origins[part].to(device), dirs[part].to(device), job.width,
                                      y1 - y0, job.lod, job.mode, job.background))
    return torch.cat(bands, 0).float().cpu().numpy()


class TextureRenderer(Protocol):
    """A renderer that leaves a job's values in a texture itself (the CUDA path: interop or upload)."""

    def render_into(self, texture: FieldTexture, job: RenderJob) -> None: ...


class RenderBackend(Protocol):
    """What the app's scheduler drives: submit jobs, collect what finished into the slot textures."""

    name: str
    reason: str

    def submit(self, job: RenderJob) -> None: ...

    def collect(self, textures: dict[str, FieldTexture]) -> list[RenderDone]: ...

    def busy(self) -> bool: ...

    def close(self) -> None: ...


class ThreadedBackend:
    """Runs the torch renderer in one background thread. Per slot only the newest submitted job waits: a job
    submitted while an older one for the same slot is still queued replaces it (a moving camera never builds a
    queue). Finished values are packed into texels on the render thread and uploaded by `collect` on the GL thread.
    rgb8: rgb images as RGBA8 texels (the CPU path; not for textures a CUDA path may register, which are float)."""

    name = "cpu"

    def __init__(self, reason: str = "", on_done: Callable[[], None] | None = None, rgb8: bool = False):
        self.reason = reason
        self.on_done = on_done
        self.rgb8 = rgb8
        """Called from the render thread after each finished job (the app wakes its idle loop with it)."""
        self._pending: dict[str, RenderJob] = {}
        self._done: list[RenderDone] = []
        self._running: RenderJob | None = None
        self._lock = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="vbnf-render", daemon=True)
        self._thread.start()

    def submit(self, job: RenderJob) -> None:
        with self._lock:
            self._pending[job.slot] = job
            self._lock.notify()

    def busy(self) -> bool:
        with self._lock:
            return bool(self._pending) or self._running is not None or bool(self._done)

    def take_done(self) -> list[RenderDone]:
        """The finished jobs since the last call, values not uploaded."""
        with self._lock:
            done, self._done = self._done, []
        return done

    def collect(self, textures: dict[str, FieldTexture]) -> list[RenderDone]:
        done = self.take_done()
        for d in done:
            if d.texels is not None and not d.error:
                textures[d.job.slot].upload(d.texels, d.job.mode)
        return done

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                # Slots in a fixed order so side A is never starved by side B.
                slot = min(self._pending, key=lambda s: {"a": 0, "b": 1}.get(s, 2))
                job = self._running = self._pending.pop(slot)
            start = time.perf_counter()
            try:
                values = render_values(job, lambda: self._superseded(job.slot))
                done = RenderDone(job, 0.0, values, texels(values, job.mode, self.rgb8))
            except Cancelled:
                done = None
            except Exception as e:  # a renderer failure must not kill the thread; the UI shows it
                done = RenderDone(job, 0.0, None, error=f"render failed: {type(e).__name__}: {e}".splitlines()[0])
            with self._lock:
                self._running = None
                if done is not None:
                    done.seconds = time.perf_counter() - start
                    self._done.append(done)
            if done is not None and self.on_done is not None:
                self.on_done()

    def _superseded(self, slot: str) -> bool:
        with self._lock:
            return self._closed or slot in self._pending

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._pending.clear()
            self._lock.notify_all()
        self._thread.join(timeout=30)


class DirectBackend:
    """Renders inside the frame with a fast renderer (the CUDA path): `collect` runs the queued jobs."""

    def __init__(self, renderer: TextureRenderer, name: str, reason: str):
        self.renderer = renderer
        self.name = name
        self.reason = reason
        self._pending: dict[str, RenderJob] = {}

    def detail(self) -> str | None:
        """One line on how frames reach the screen now (the renderer's describe()), or None."""
        describe = getattr(self.renderer, "describe", None)
        return describe() if describe is not None else None

    def submit(self, job: RenderJob) -> None:
        self._pending[job.slot] = job

    def busy(self) -> bool:
        return bool(self._pending)

    def collect(self, textures: dict[str, FieldTexture]) -> list[RenderDone]:
        done = []
        for slot, job in list(self._pending.items()):
            start = time.perf_counter()
            try:
                self.renderer.render_into(textures[slot], job)
                done.append(RenderDone(job, time.perf_counter() - start))
            except Exception as e:
                done.append(RenderDone(job, 0.0, None, f"{self.name} render failed: {e}".splitlines()[0]))
        self._pending.clear()
        return done

    def close(self) -> None:
        self._pending.clear()
        close = getattr(self.renderer, "close", None)
        if close is not None:
            close()


class EngineTextureRenderer:
    """TextureRenderer over engine.gpu_render.Renderer: the CUDA marcher writes a FieldTexture's GL texture through an
    engine.render_target.GLTextureTarget (interop: CUDA memory imported by GL, or the texture mapped for surface
    stores; otherwise a device copy + upload).

    The target owns the texture while registered and may replace it on a resize, so after each render the
    FieldTexture is pointed at the target's texture. `close()` unregisters everything (GL context current)."""

    def __init__(self, renderer, ctx):
        from engine.render_target import GLTextureTarget
        self._target_type = GLTextureTarget
        self.renderer = renderer
        self.ctx = ctx
        self._targets: dict[int, object] = {}

    def render_into(self, texture: FieldTexture, job: RenderJob) -> None:
        target = self._targets.get(id(texture))
        if target is None or target.texture is not texture.texture:
            if target is not None:
                target.release()
            target = self._targets[id(texture)] = self._target_type(self.ctx, texture.texture)
        self.renderer.render(job.field, job.cameras, job.lod, job.mode, job.background, target)
        texture.texture = target.texture
        texture.set_filter(job.mode)

    def describe(self) -> str | None:
        """How the last-used target gets its frames (engine.render_target.GLTextureTarget.describe), or None."""
        for target in reversed(list(self._targets.values())):
            return target.describe()
        return None

    def close(self) -> None:
        for target in self._targets.values():
            target.release()
        self._targets.clear()


def _one_line(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def choose_backend(ctx, prefer_cpu: bool = False) -> RenderBackend:
    """The backend for the path engine.render_policy.choose_renderer picks (it logs the choice): the CUDA marcher
    writing into the GL textures, else the torch renderer in a thread. The reason is kept for the stats panel.
    ctx: the moderngl context, current on this thread; prefer_cpu: `vbnf view --cpu`."""
    from engine.render_policy import choose_renderer
    choice = choose_renderer("torch" if prefer_cpu else "auto", gl_available=True)
    if not choice.uses_cuda:
        return ThreadedBackend(choice.reason + (" (--cpu)" if prefer_cpu else ""), rgb8=True)
    try:
        from engine.gpu_render import Renderer
        renderer = EngineTextureRenderer(Renderer(choice), ctx)
    except Exception as e:  # the marcher failed to start: the viewer still opens, on the torch path
        return ThreadedBackend(f"{choice.path} failed to start ({_one_line(e)}); torch renderer on the CPU",
                               rgb8=True)
    return DirectBackend(renderer, choice.path, choice.reason)
