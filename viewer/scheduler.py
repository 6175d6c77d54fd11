"""Which image to render next, and at what resolution.

While the view changes, each new view is rendered at an "interactive" scale chosen so one render takes about one
frame at the target frame rate (measured seconds per pixel, smoothed). When the view holds still, the image is
refined: the scale doubles until it reaches the window's full resolution. Per slot ("a", "b", "shot") the scheduler
remembers what is shown and what is in flight, so each frame submits at most one job per slot and only when needed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from viewer.render_paths import RenderBackend, RenderDone, RenderJob
from viewer.gl_resources import FieldTexture

SMOOTHING = 0.3  # weight of the newest seconds-per-pixel measurement
SCALE_QUANTUM = 1.0 / 32.0  # interactive scales are multiples of this, so small timing noise keeps the size


class ResolutionController:
    """Chooses the interactive render scale (fraction of the full width and height) from measured render times."""

    def __init__(self) -> None:
        self.seconds_per_pixel: float | None = None

    def observe(self, pixels: int, seconds: float) -> None:
        if pixels <= 0 or seconds <= 0:
            return
        spp = seconds / pixels
        old = self.seconds_per_pixel
        self.seconds_per_pixel = spp if old is None else (1 - SMOOTHING) * old + SMOOTHING * spp

    def interactive_scale(self, full_pixels: int, target_fps: float, min_scale: float) -> float:
        """Scale whose render takes about 1 / target_fps seconds; min_scale before anything is measured."""
        if self.seconds_per_pixel is None or full_pixels <= 0:
            return min_scale
        budget = 1.0 / max(target_fps, 1.0)
        scale = math.sqrt(budget / (self.seconds_per_pixel * full_pixels))
        scale = math.floor(scale / SCALE_QUANTUM) * SCALE_QUANTUM
        return float(min(1.0, max(min_scale, scale)))


def refined_scale(scale: float) -> float:
    """The next step of progressive refinement."""
    return min(1.0, scale * 2.0)


def scaled_size(full: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(full[0] * scale)), max(1, round(full[1] * scale))


@dataclass
class Want:
    """What a slot should show: `make(width, height)` builds the job for a resolution; `full` is the final size."""

    key: tuple
    full: tuple[int, int]
    make: Callable[[int, int], RenderJob]


@dataclass
class Shown:
    """What a slot's texture holds."""

    key: tuple
    size: tuple[int, int]
    full: tuple[int, int]
    job: RenderJob

    @property
    def final(self) -> bool:
        return self.size == self.full


class RenderScheduler:
    """Per frame: `update(wants)` submits what each slot needs next; `collect()` takes finished images in."""

    def __init__(self, backend: RenderBackend, textures: dict[str, FieldTexture]):
        self.backend = backend
        self.textures = textures
        self.resolution = ResolutionController()
        self.shown: dict[str, Shown] = {}
        self.requested: dict[str, tuple[tuple, tuple[int, int], tuple[int, int]]] = {}
        self.last_error = ""

    def update(self, wants: dict[str, Want], target_fps: float, min_scale: float) -> None:
        for slot, want in wants.items():
            shown = self.shown.get(slot)
            if shown is not None and shown.key == want.key and shown.full == want.full:
                if shown.final:
                    continue
                scale = refined_scale(shown.size[0] / max(want.full[0], 1))
                size = scaled_size(want.full, scale)
                if size[0] <= shown.size[0]:
                    size = want.full
            elif slot == "shot":  # screenshots go straight to full size
                size = want.full
            else:
                pixels = want.full[0] * want.full[1]
                size = scaled_size(want.full, self.resolution.interactive_scale(pixels, target_fps, min_scale))
            request = (want.key, size, want.full)
            if self.requested.get(slot) == request:
                continue  # already queued or running
            self.backend.submit(want.make(*size))
            self.requested[slot] = request

    def collect(self) -> list[RenderDone]:
        done = self.backend.collect(self.textures)
        for d in done:
            job = d.job
            req = self.requested.get(job.slot)
            if d.error:  # kept in `requested`: the same image is not retried until something changes
                self.last_error = d.error
                continue
            self.resolution.observe(job.width * job.height, d.seconds)
            full = req[2] if req is not None and req[0] == job.key else (job.width, job.height)
            self.shown[job.slot] = Shown(job.key, (job.width, job.height), full, job)
        return done

    def is_final(self, slot: str, key: tuple, full: tuple[int, int]) -> bool:
        """The slot shows `key` at full resolution."""
        s = self.shown.get(slot)
        return s is not None and s.key == key and s.full == full and s.final

    def forget(self, slot: str) -> None:
        """Drops what the slot holds (its next want renders afresh)."""
        self.shown.pop(slot, None)
        self.requested.pop(slot, None)

    def busy(self) -> bool:
        return self.backend.busy()
