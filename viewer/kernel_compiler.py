"""CUDA marcher variants compiled off the frame thread, and the render backend that waits for them without waiting.

A march_rays variant is compiled by NVRTC the first time a (feature width, LODs, codebook rows, mode) combination
is drawn: about 20 s for an rgb variant (docs/CUDA.md). The frame must never do that, so:

- `KernelCompiler` compiles variants on one worker thread (engine.cuda.toolchain.compile_to_cache into the disk
  cache, then get_kernel to load it for the process) and answers `ready(field, mode)` at once from the frame;
- `CompilingBackend` wraps the CUDA backend: a job whose variant is ready renders on the GPU inside the frame; a job
  whose variant is still compiling renders with the torch path in a thread while its slot has never been drawn by
  CUDA (the first image of a session), else the slot keeps its last image (its texture is registered for interop
  and is not re-uploaded); the status line says "compiling kernels (first run)". When the variant is ready the
  newest job of every slot is rendered on the GPU and any older torch result is dropped.

`warm_variants` lists what `vbnf warmup` compiles ahead (engine.cuda.toolchain.compile_to_cache, no GPU needed).
Imports of engine.cuda happen inside the functions: importing this module never needs CUDA.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from engine.field import InferenceField

COMPILING_NOTICE = "compiling kernels (first run)"


def variant_key(field: InferenceField, mode: str) -> tuple:
    """What decides the march_rays variant of (field, mode) under one tuning (engine.cuda.marcher.GpuField
    .kernel_options): feature width, base level, LODs held, largest codebook (None: dense), mode. Cheap: no tensor
    is read."""
    rows = [r.codebook.shape[0] for r in field.levels if r.codebook is not None]
    return field.feature_dim, field.base_level, field.max_lod + 1, max(rows) if rows else None, mode


def marcher_prepare(device, tuning) -> Callable[[InferenceField, str], str]:
    """The real compile step for `KernelCompiler`: the variant of (field, mode) compiled into the disk cache with
    NVRTC (no lock held), then loaded for the process (engine.cuda.marcher.get_kernel reads the cache file). Returns
    "compiled" or "disk cache"."""
    import torch
    from engine.cuda import marcher, toolchain

    def prepare(field: InferenceField, mode: str) -> str:
        options = marcher.GpuField.from_field(field, "cpu").kernel_options(mode, tuning)
        dev = toolchain.cuda_device(device)
        arch, cubin = toolchain.nvrtc_target(torch.cuda.get_device_capability(dev))
        _, origin = toolchain.compile_to_cache(marcher.SOURCE_PATH, options, arch, cubin)
        marcher.get_kernel(dev, options)
        return origin

    return prepare


class KernelCompiler:
    """Variants compiled on a worker thread. `ready()` is called by the frame and never blocks.

    prepare(field, mode): compiles and loads the variant (marcher_prepare); wake(): called (from the worker) when a
    variant is ready, so an idle frame loop wakes up (glfw.post_empty_event)."""

    def __init__(self, prepare: Callable[[InferenceField, str], str], wake: Callable[[], None] | None = None):
        self._prepare = prepare
        self._wake = wake
        self._lock = threading.Condition()
        self._ready: set[tuple] = set()
        self._queue: dict[tuple, tuple[InferenceField, str]] = {}
        self._failed: dict[tuple, str] = {}
        self._working: tuple | None = None
        self._closed = False
        self.seconds: dict[tuple, float] = {}
        """Per variant: seconds its compile (or disk-cache load) took on the worker."""
        self._thread = threading.Thread(target=self._loop, name="vbnf-kernels", daemon=True)
        self._thread.start()

    def ready(self, field: InferenceField, mode: str) -> bool:
        """Whether (field, mode) can render on the GPU now; if not, its variant is queued (once)."""
        key = variant_key(field, mode)
        with self._lock:
            if key in self._ready or key in self._failed:
                return key in self._ready
            if key != self._working and key not in self._queue:
                self._queue[key] = (field, mode)
                self._lock.notify()
            return False

    def failed(self, field: InferenceField, mode: str) -> str:
        """The one-line compile failure of (field, mode)'s variant ("" when none)."""
        with self._lock:
            return self._failed.get(variant_key(field, mode), "")

    def pending(self) -> bool:
        """A variant is queued or compiling."""
        with self._lock:
            return bool(self._queue) or self._working is not None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._queue.clear()
            self._lock.notify_all()
        self._thread.join(timeout=1)  # a running NVRTC compile cannot be interrupted: the daemon thread ends later

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                key = next(iter(self._queue))
                field, mode = self._queue.pop(key)
                self._working = key
            start = time.perf_counter()
            error = ""
            try:
                self._prepare(field, mode)
            except Exception as e:  # the variant stays on the torch path; the panel shows why
                error = f"CUDA kernel for {mode} failed to compile ({type(e).__name__}: {e}".splitlines()[0] + ")"
            with self._lock:
                self._working = None
                self.seconds[key] = time.perf_counter() - start
                if error:
                    self._failed[key] = error
                else:
                    self._ready.add(key)
            if self._wake is not None:
                self._wake()


class CompilingBackend:
    """The CUDA backend (`direct`, a render_paths.DirectBackend) whose jobs wait for their variant on the torch path
    (`fallback`, a render_paths.ThreadedBackend) instead of in the frame. Same interface as both."""

    def __init__(self, direct, fallback, compiler: KernelCompiler):
        self.direct = direct
        self.fallback = fallback
        self.compiler = compiler
        self.name = direct.name
        self.reason = direct.reason
        self._waiting: dict[str, object] = {}  # slot -> newest job sent to the torch path
        self._gpu_slots: set[str] = set()  # slots whose texture the CUDA path has written (registered for interop)
        self.compiling = False
        """The last collect left a job waiting for its variant (the panel says COMPILING_NOTICE)."""

    def detail(self) -> str | None:
        return self.direct.detail()

    def submit(self, job) -> None:
        if self.compiler.ready(job.field, job.mode):
            self._waiting.pop(job.slot, None)
            self.direct.submit(job)
        else:  # compiling, or failed to compile: the torch path draws it (unless the slot keeps its last image)
            self._waiting[job.slot] = job
            if job.slot not in self._gpu_slots or self.compiler.failed(job.field, job.mode):
                self.fallback.submit(job)

    def busy(self) -> bool:
        return self.direct.busy() or bool(self._waiting) or self.fallback.busy()

    def collect(self, textures) -> list:
        done = []
        for d in self.fallback.take_done():  # torch results still wanted go into the texture
            slot = d.job.slot
            if self._waiting.get(slot) is not d.job:
                continue
            if slot in self._gpu_slots and not self.compiler.failed(d.job.field, d.job.mode):
                # the texture is registered with CUDA (interop): an upload could resize it under the registration.
                # The slot keeps its last image; the job renders on the GPU once its variant is ready.
                continue
            if d.texels is not None and not d.error:
                textures[slot].upload(d.texels, d.job.mode)
            done.append(d)
            del self._waiting[slot]
        for slot, job in list(self._waiting.items()):  # variant ready since: the GPU renders it now
            if self.compiler.ready(job.field, job.mode):
                del self._waiting[slot]
                self.direct.submit(job)
        self.compiling = self.compiler.pending() or any(not self.compiler.failed(j.field, j.mode)
                                                        for j in self._waiting.values())
        direct = self.direct.collect(textures)
        self._gpu_slots.update(d.job.slot for d in direct)
        return done + direct

    def close(self) -> None:
        self.fallback.close()
        self.compiler.close()
        self.direct.close()
