"""`vbnf view [MODEL]`: the window, the frame loop and the command line.

The App only wires the parts together and runs the loop; each part lives in its own module:
window (GLFW + GL + ImGui), state (AppState), controls (mouse/keys -> camera), actions (commands),
field_view (render scheduling, drawing, captures), panel (draw_ui), field_source (the model),
training_session (live training).

One frame: poll events -> ImGui new frame -> input -> commands due (download animation, training snapshot)
-> field_view.update (submit renders, take finished ones in) -> draw_scene -> draw_ui -> swap. Nothing in a frame
waits for a render, a kernel compile or a training step: the CPU path renders in a thread, CUDA kernels compile on a
worker (viewer/kernel_compiler.py), training runs in its thread, and the frame shows the newest finished image.

An idle viewer idles: once nothing changes (no input, the image final, no training, no background job), the loop
waits for an event (glfw.wait_events_timeout); worker threads wake it with glfw.post_empty_event when they finish.

Tests drive it headless: `App(model, 160, 120, headless=True)`, `app.frame()`, `app.state`, `app.actions`.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from pathlib import Path

from viewer.window import Window  # first: imports imgui_bundle before glfw
from imgui_bundle import imgui
import glfw

from engine.bundled import bundled_model_path
from engine.errors import VbnfError
from viewer.actions import Actions
from viewer.controls import ViewControls
from viewer.field_source import Models
from viewer.field_view import FieldView, view_rect
from viewer.gl_resources import read_screen
from viewer.kernel_compiler import CompilingBackend, KernelCompiler, marcher_prepare
from viewer.panel import draw_ui
from viewer.render_paths import DirectBackend, ThreadedBackend, choose_backend
from viewer.state import AppState
from viewer.training_session import DatasetCache

MINIMISED_SLEEP_S = 0.05
UI_FPS_CAP = 60.0  # the loop sleeps out the rest of a frame: on a CPU-only machine the UI's GL (llvmpipe) and the
                   # torch renderer share the cores, so frames beyond this only slow the render down
TRAINING_UI_FPS = 32.0  # while training the view refreshes at most this often: the rest of the time trains (the
                        # frame thread's Python holds the GIL that the trainer's launches need); 30 fps is the aim
FULL_SPEED_FRAME_S = 0.25  # "train at full speed": the view refreshes a few times a second
CUDA_GIL_SWITCH_S = 0.001  # with CUDA training, the interpreter hands the GIL between threads this often (Python's
                           # default 5 ms): the frame thread waits less for the trainer's kernel launches (H200,
                           # 2026-12-03: training 0.81 -> 0.86 of a plain loop at the same 31.8 fps; docs/VIEWER.md)
QUIET_FRAMES = 3  # frames drawn after the last change before the loop waits for events (ImGui settles hover states)
IDLE_WAIT_S = 1.0  # an idle loop draws a frame at least this often (clock-like overlays stay honest)


class App:
    """The viewer: one window showing one model. `frame()` runs one iteration of the loop."""

    def __init__(self, model_path: str | None = None, width: int = 1280, height: int = 800, headless: bool = False,
                 cpu_only: bool = False, output_dir: str = ".", backend=None, training_device: str | None = None,
                 idle_wait: bool = True):
        """backend: a render backend to use instead of choose_backend's (tests); training_device: "cpu" or "cuda"
        (None: CUDA when the GPU renders and CUDA works, else the CPU); idle_wait: the loop waits for events when
        nothing changes (False: it draws every frame, for benchmarks that time frames)."""
        self.state = AppState(output_dir=output_dir)
        self.models = Models()
        self._closed = False
        self.idle_wait = idle_wait
        self.datasets = DatasetCache(on_loaded=self.wake)
        self.window = Window(width, height, "vbnf", headless=headless, on_drop=self._on_drop)
        self.warmup_process = None
        """`vbnf warmup` started in the background on the first launch with CUDA (None otherwise)."""
        self.frame_thread = threading.current_thread()
        """The thread that runs frames (the GL context's); no compile or serialisation runs on it."""
        backend = backend if backend is not None else self._make_backend(cpu_only)
        self.state.stats.render_path = backend.name
        self.state.stats.render_path_reason = backend.reason
        self.view = FieldView(self.window.ctx, backend)
        if self.window.software_gl:  # its shader variants compile now, not in the frame that first needs one
            self.view.field_pass.prime_variants()
        device, reason = (training_device, "") if training_device is not None else \
            choose_training_device(cpu_only)
        self.actions = Actions(self.state, self.models, self.view, self.datasets, training_device=device,
                               training_device_reason=reason, wake=self.wake)
        self.actions.prepare_snapshot = self._snapshot_uploader(backend)
        self.frame_stream = FrameStream.for_path(backend.name)
        """The frame's CUDA work runs on a high-priority stream (None off the CUDA path)."""
        if device == "cuda":
            sys.setswitchinterval(CUDA_GIL_SWITCH_S)
        self.controls = ViewControls()
        self._dropped: list[str] = []
        self._last_frame = time.perf_counter()
        self._quiet = 0
        self.frames = 0
        self.waits = 0
        """Frames that began by waiting for an event (the loop was idle)."""
        if model_path:
            self.actions.open_model(model_path)
        preload_training_modules()  # before the first frame: an import that holds the interpreter for seconds

    def _make_backend(self, cpu_only: bool):
        """choose_backend's path; the CUDA one behind a KernelCompiler so no variant compiles in a frame."""
        backend = choose_backend(self.window.ctx, prefer_cpu=cpu_only)
        if isinstance(backend, ThreadedBackend):
            backend.on_done = self.wake
            return backend
        if isinstance(backend, DirectBackend):
            try:
                marcher = backend.renderer.renderer.marcher
                compiler = KernelCompiler(marcher_prepare(marcher.device, marcher.tuning), wake=self.wake)
            except AttributeError:  # another TextureRenderer: nothing to compile
                return backend
            fallback = ThreadedBackend("torch path while the CUDA kernels compile", on_done=self.wake)
            from viewer.warmup import start_in_background
            self.warmup_process = start_in_background()  # first launch: the common variants, in the background
            return CompilingBackend(backend, fallback, compiler)
        return backend

    @staticmethod
    def _snapshot_uploader(backend):
        """On the CUDA path: a function that uploads a training snapshot into the marcher's field cache (run by the
        training thread, so converting a large field to the kernel's layout does not cost a frame); else None."""
        direct = backend.direct if isinstance(backend, CompilingBackend) else backend
        marcher = getattr(getattr(getattr(direct, "renderer", None), "renderer", None), "marcher", None)
        return None if marcher is None else marcher.upload

    def wake(self) -> None:
        """Wakes a loop waiting for events (any thread)."""
        if not self._closed:
            try:
                glfw.post_empty_event()
            except Exception:  # GLFW already terminated
                pass

    def _on_drop(self, paths: list[str]) -> None:
        self._dropped.extend(paths)  # opened at the start of the next frame, not inside GLFW's callback

    def frame(self) -> None:
        """One iteration: events, input, commands due, renders, drawing, swap. Never waits for a render."""
        with self.frame_stream.active() if self.frame_stream is not None else contextlib.nullcontext():
            self._frame()

    def _frame(self) -> None:
        self._wait_or_poll()
        start = time.perf_counter()
        dt = start - self._last_frame
        self._last_frame = start
        if self._dropped:
            paths, self._dropped = self._dropped, []
            self.actions.drop_files(paths)
        if self.window.minimised():  # zero-size framebuffer: nothing to draw, keep the threads going
            self.actions.poll_training()
            time.sleep(MINIMISED_SLEEP_S)
            return
        fb = self.window.framebuffer_size()
        s = self.state
        self.window.begin_ui()
        display = imgui.get_io().display_size
        scale = fb[0] / display.x if display.x > 0 else 1.0  # framebuffer pixels per window pixel
        rect = view_rect(s, fb, scale)
        self.controls.handle(s, self.actions)
        self.actions.advance_download(dt)
        self.actions.poll_training()
        self.actions.poll_dialog()
        self.actions.poll_open()
        self.view.update(s, self.models, self.datasets, rect, scale)
        self.view.draw_scene(s, fb)
        draw_ui(s, self.actions)
        self.window.end_ui()
        self.window.swap()
        self.frames += 1
        self._update_stats(start, dt)
        self._quiet = self._quiet + 1 if not self.changing() else 0
        training = s.training.running
        if training and s.training.full_speed:
            period = FULL_SPEED_FRAME_S
        else:
            period = 1.0 / (TRAINING_UI_FPS if training else UI_FPS_CAP)
        rest = period - (time.perf_counter() - start)
        if rest > 0:
            time.sleep(rest)

    def changing(self) -> bool:
        """Something changes without input: an image refining or rendering, a capture waiting, training, the
        download animation, a kernel compiling, a data set loading, a field being prepared, a dialog open."""
        s = self.state
        return bool(s.stats.refining or self.view.scheduler.busy() or self.view.captures or s.training.running
                    or s.download_bytes_per_s > 0 or self._dropped or s.stats.compiling or self.actions.busy()
                    or self.datasets.loading() or self.models.preparing())

    def _wait_or_poll(self) -> None:
        """Polls events; after QUIET_FRAMES frames without change, waits for one instead (near 0% CPU)."""
        s = self.state
        if self.idle_wait and self._quiet >= QUIET_FRAMES:
            s.stats.waiting = True
            self.waits += 1
            start = time.perf_counter()
            self.window.wait(IDLE_WAIT_S)
            if time.perf_counter() - start < IDLE_WAIT_S * 0.9:
                self._quiet = 0  # woken by an event: draw a few frames for ImGui to take it in
        else:
            s.stats.waiting = False
            self.window.poll()

    def _update_stats(self, start: float, dt: float) -> None:
        st = self.state.stats
        st.frame_ms = (time.perf_counter() - start) * 1000.0
        if dt > 0:
            st.fps = 1.0 / dt if st.fps == 0 else 0.9 * st.fps + 0.1 / dt
        st.compiling = bool(getattr(self.view.scheduler.backend, "compiling", False))
        if st.render_path.startswith("cuda") and self.frames % 30 == 1:
            st.gpu_memory = gpu_memory_text()
            detail = getattr(self.view.scheduler.backend, "detail", None)
            st.render_path_detail = (detail() if detail is not None else None) or ""
        spp = self.view.scheduler.resolution.seconds_per_pixel
        shown = self.view.scheduler.shown.get("a")
        if spp is not None and shown is not None:
            st.render_ms = spp * shown.size[0] * shown.size[1] * 1000.0

    # -- for scripts and tests -------------------------------------------------------------------------------------

    def run_until_idle(self, timeout_s: float = 30.0, stop_on_error: bool = False) -> bool:
        """Runs frames until every image is final, no capture waits and no model is being opened (True), or until
        the timeout (False).
        stop_on_error: return False at once when a frame leaves an error (a failed render never becomes final)."""
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            self.frame()
            if stop_on_error and self.state.error:
                return False
            if not (self.state.stats.refining or self.view.captures or self.view.scheduler.busy()
                    or self.models.preparing() or self.actions.opening()):
                self.frame()  # one more so the final image is on screen
                return True
        return False

    def read_screen(self):
        """The window's framebuffer (uint8 [H,W,3], top row first) as the last frame left it."""
        return read_screen(self.window.ctx, self.window.framebuffer_size())

    def run(self) -> int:
        """The interactive loop until the window closes."""
        while not self.window.should_close():
            self.frame()
        return 0

    def close(self) -> None:
        """Stops the threads and frees GL objects before the context goes."""
        self._closed = True
        self.actions.close()
        self.view.release()
        self.window.close()


def preload_training_modules() -> None:
    """Runs one tiny Adam step: torch imports torch._dynamo and much of torch.distributed on a process's first
    optimiser step (1-4 s), and while it does no other thread of the process runs (measured: the frame thread
    stalled 0.5-1.7 s when live training started). Done once before the first frame, that stall is part of the
    start-up instead of a frozen view when "Start" is pressed. A no-op after the first call."""
    try:
        import torch
        import engine.train  # noqa: F401
        p = torch.nn.Parameter(torch.zeros(1))
        p.grad = torch.ones(1)
        torch.optim.Adam([p]).step()
    except Exception:  # only a warm-up: training reports its own failures
        pass


class FrameStream:
    """A high-priority CUDA stream for the frame thread's kernels (the marcher renders on torch's current stream):
    the GPU schedules them ahead of live training's, which runs on a stream of its own, so training needs no pauses
    for the view to keep its frame rate. Each frame is ordered after all earlier work on the default stream (fields
    uploaded by other threads) and the default stream after the frame (memory those threads free and reuse)."""

    def __init__(self, device=None):
        import torch
        self.stream = torch.cuda.Stream(device, priority=-1)  # torch maps it to the device's highest priority

    @staticmethod
    def for_path(render_path: str) -> "FrameStream | None":
        """One for a CUDA render path ("cuda", "cuda+interop"), else None."""
        if not render_path.startswith("cuda"):
            return None
        try:
            return FrameStream()
        except Exception:  # no stream: the frame runs on the default stream as before
            return None

    @contextlib.contextmanager
    def active(self):
        import torch
        default = torch.cuda.default_stream(self.stream.device)
        self.stream.wait_stream(default)
        try:
            with torch.cuda.stream(self.stream):
                yield
        finally:
            default.wait_stream(self.stream)


def choose_training_device(cpu_only: bool) -> tuple[str, str]:
    """("cuda", "") when CUDA works and the CPU was not asked for, else ("cpu", why in one line)."""
    if cpu_only:
        return "cpu", "training on the CPU: --cpu was given"
    try:
        import torch
        if torch.cuda.is_available():
            return "cuda", ""
        return "cpu", "training on the CPU: torch sees no CUDA device"
    except Exception as e:
        return "cpu", f"training on the CPU: CUDA failed ({type(e).__name__})"


def gpu_memory_text() -> str:
    """"allocated / reserved / total" for torch's current CUDA device ("" without CUDA)."""
    try:
        import torch
        if not torch.cuda.is_available():
            return ""
        mib = 1024 * 1024
        total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
        return (f"{torch.cuda.memory_allocated() / mib:.0f} MiB allocated, {torch.cuda.memory_reserved() / mib:.0f} "
                f"MiB reserved of {total / mib:.0f} MiB")
    except Exception:
        return ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default=None,
                        help="a .vbnf model file (default: the bundled default.vbnf)")
    parser.add_argument("--size", default="1280x800", help="window size WIDTHxHEIGHT (default 1280x800)")
    parser.add_argument("--cpu", action="store_true", help="render with the torch CPU path even if CUDA works")
    parser.add_argument("--output-dir", default=".", help="folder for screenshots and comparisons")
    parser.add_argument("--headless", action="store_true",
                        help="no visible window (GLFW Null platform + EGL); with --screenshot for scripted images")
    parser.add_argument("--screenshot", action="store_true",
                        help="write one screenshot once the image is final, then exit")


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise VbnfError(f"--size takes WIDTHxHEIGHT like 1280x800, got {text!r}") from None
    if not (16 <= w <= 16384 and 16 <= h <= 16384):
        raise VbnfError(f"--size {w}x{h}: each side must be between 16 and 16384 pixels")
    return w, h


def _check_renderable(model: str) -> None:
    """A scripted screenshot of a model no renderer can march fails here, in one line, before the window opens and
    the render path is chosen (and logged)."""
    from engine.fileformat import load_model
    from engine.render import samples_per_ray_bound
    samples_per_ray_bound(load_model(model))


def run(args) -> int:
    width, height = _parse_size(args.size)
    model = args.model
    if model is None:
        model = str(bundled_model_path())
    if not Path(model).exists():
        raise VbnfError(f"{model}: no such file; pass an existing .vbnf model")
    if args.screenshot:
        _check_renderable(model)
    app = App(model, width, height, headless=args.headless, cpu_only=args.cpu, output_dir=args.output_dir)
    try:
        if app.state.error:
            raise VbnfError(app.state.error)
        if args.screenshot:
            app.actions.screenshot()
            finished = app.run_until_idle(timeout_s=600.0, stop_on_error=True)
            if app.state.error:
                raise VbnfError(f"no screenshot: {app.state.error}")
            if not finished:
                raise VbnfError("the screenshot did not finish within 10 minutes; try a smaller --size")
            print(app.state.message)
            return 0
        return app.run()
    finally:
        app.close()
