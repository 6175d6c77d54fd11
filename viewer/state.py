"""AppState: every value the viewer's frame reads or the panel edits, in one plain dataclass.

The panel (viewer/panel.py) edits the settings fields directly and calls viewer/actions.py for one-shot commands;
the app (viewer/app.py) reconciles the rest of the program with these values once per frame and writes the
read-only facts (`model`, `stats`, `training`) back. Nothing here holds a GL object, a thread or a tensor.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from viewer.camera import OrbitCamera

CompareKind = Literal["lod", "bits", "model", "ground truth"]
COMPARE_KINDS: tuple[str, ...] = ("lod", "bits", "model", "ground truth")


@dataclass
class CompareSettings:
    """The split view: side A (left of the divider) shows the main settings, side B (right) differs in one."""

    enabled: bool = False
    """Whether the image is split."""
    kind: CompareKind = "lod"
    """What side B changes: its LOD, its bitwidth, the model (another file), or the nearest training image."""
    lod_b: int = 0
    """Side B's LOD (kind "lod")."""
    bits_b: int = 2
    """Side B's codebook bitwidth (kind "bits")."""
    model_b_path: str = ""
    """Side B's model file (kind "model")."""
    divider: float = 0.5
    """Divider position, fraction of the window width from the left (dragged with the mouse)."""


@dataclass
class ModelInfo:
    """Facts about the model shown, written by the app for the panel (read-only for the panel)."""

    name: str = ""
    """File name (or "(none)")."""
    max_lod: int = 0
    """Finest LOD the shown field holds (a stream prefix may hold fewer than the model)."""
    n_lods: int = 1
    """LODs of the complete model."""
    trained_bits: int | None = None
    """Bitwidth stored in the file (None: a dense grid, no codebook)."""
    ladder_bytes: list[int] = field(default_factory=list)
    """Per LOD k: bytes of the file prefix LOD k needs, at the shown bitwidth (the bitrate ladder)."""
    ladder_psnr: dict[int, float] = field(default_factory=dict)
    """Per LOD: PSNR in dB stored in the file's metrics (only LODs that have one)."""
    size_bytes: int = 0
    """Size of the whole model at the shown bitwidth, bytes."""
    file_bytes: int = 0
    """Size of the file as stored, bytes (the streaming slider's range)."""
    loaded_bytes: int = 0
    """Bytes of the file the shown field was read from (< file_bytes while streaming)."""
    dataset: str = ""
    """Data set path from the file's metadata ("" when unknown)."""
    live: bool = False
    """The field shown is a live training snapshot rather than the file."""


@dataclass
class Stats:
    """Timings and render facts, written by the app every frame."""

    frame_ms: float = 0.0
    """Duration of the last frame (UI + upload + draw), milliseconds."""
    fps: float = 0.0
    """Frames per second, smoothed."""
    render_ms: float = 0.0
    """Time of the last field render (CPU: torch renderer in the render thread), milliseconds."""
    render_size: tuple[int, int] = (0, 0)
    """Width, height in pixels of the field image shown (below the window's while moving, then refined)."""
    view_size: tuple[int, int] = (0, 0)
    """Width, height in pixels of the field's part of the window: the size of a final (fully refined) image."""
    render_path: str = "cpu"
    """Active render path: cuda+interop, cuda+upload or cpu."""
    render_path_reason: str = ""
    """Why that path was chosen (one line)."""
    render_path_detail: str = ""
    """How frames reach the screen on that path now, e.g. which CUDA-GL interop (one line; "" on the CPU path)."""
    gpu_memory: str = ""
    """GPU memory in use when rendering on CUDA ("" otherwise)."""
    refining: bool = False
    """A render is queued or running (the image is not yet final)."""
    compiling: bool = False
    """A CUDA kernel variant is being compiled on its worker thread (the view uses the torch path meanwhile)."""
    waiting: bool = False
    """The loop sleeps until an event (nothing changes: no input, no render, no training)."""


@dataclass
class TrainingView:
    """Live training as the panel shows it (written by the app from the training session)."""

    dataset_path: str = ""
    """Data set to train on (from the model's metadata, or typed in)."""
    running: bool = False
    """Training steps are being taken now."""
    status: str = ""
    """One line: loading, training, paused, or the last error."""
    steps: list[int] = field(default_factory=list)
    """Step numbers of the recorded history."""
    loss: list[float] = field(default_factory=list)
    """Training loss per recorded step."""
    psnr: list[float] = field(default_factory=list)
    """Training PSNR (dB) per recorded step."""
    device: str = "cpu"
    """Device live training runs on ("cuda" when CUDA works, else "cpu")."""
    device_reason: str = ""
    """Why it trains on the CPU (one line; "" on CUDA)."""
    batch: int = 0
    """Rays per training step (vbnf train's default for the device)."""
    steps_per_s: float = 0.0
    """Training steps per second over the last few seconds."""
    share: float = 0.0
    """Fraction of the wall time spent in training steps over the last few seconds."""
    full_speed: bool = False
    """"Train at full speed": training gets all the time it can; the view refreshes a few times a second."""


@dataclass
class ViewInfo:
    """What the image shows, written by the app each frame for the panel and the overlays (read-only)."""

    label_a: str = ""
    """Side A's label: model, LOD, bits, prefix bytes, PSNR when known."""
    label_b: str = ""
    """Side B's label ("" when the view is not split)."""
    notice: str = ""
    """Why the view shows less than asked (e.g. the byte budget holds no LOD yet); "" when all is shown."""
    training_camera: int = -1
    """Index of the training camera the view renders from (ground-truth comparison), -1 for the orbit camera."""
    panel_width: float = 0.0
    """Width of the panel docked at the window's left, window pixels (0: hidden or collapsed); written by the panel."""
    legend: tuple[str, float, float] | None = None
    """Side A's colour-mapped mode and its value range (low, high) in the mode's units, for the legend; None for
    rgb and normal."""
    rect: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    """The field's part of the window: x, y (from the top-left), width, height in window pixels (right of the
    panel, or the whole window when the panel is hidden or the window too narrow)."""


@dataclass
class AppState:
    """Everything the frame draws from and the panel edits."""

    model_path: str = ""
    """Path of the model file shown ("" when none is loaded)."""
    lod: int = 0
    """LOD to render (clamped to what the shown field holds)."""
    bits: int | None = None
    """Codebook bitwidth to show (None: as stored). Lower re-quantises, higher splits the codebook."""
    byte_budget: int | None = None
    """Streaming: render only what the first N bytes of the file give (None: the whole file)."""
    download_bytes_per_s: float = 0.0
    """Speed of the "simulate download" animation, bytes per second (0: not animating)."""
    camera: OrbitCamera = field(default_factory=OrbitCamera)
    """The view."""
    render_mode: str = "rgb"
    """rgb | depth | normal | samples | level (depth, samples, level are colour-mapped by the shader)."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Background colour, RGB in [0,1]."""
    target_fps: float = 60.0
    """Frame rate the render resolution adapts to while the camera moves."""
    min_render_scale: float = 1.0 / 16.0
    """Lowest render resolution while moving, as a fraction of the window's width and height."""
    compare: CompareSettings = field(default_factory=CompareSettings)
    """Split view settings."""
    screenshot_scale: int = 1
    """Screenshots render at this multiple of the window's resolution."""
    output_dir: str = "."
    """Folder screenshots and comparisons are written to."""
    save_path: str = ""
    """Where "Save" writes the model (a new name is proposed; an existing file asks before overwriting)."""
    open_path: str = ""
    """Path typed into the Open box."""
    show_panel: bool = True
    """Whether the ImGui panel is drawn (Tab toggles)."""
    show_help: bool = False
    """Whether the keys overlay is drawn (F1 or ? toggles)."""
    error: str = ""
    """The last user-facing failure, one line (what, where, what to do); "" when none."""
    message: str = ""
    """The last success note, one line (e.g. where a screenshot went)."""
    confirm_overwrite: str = ""
    """A path waiting for the user's "overwrite?" answer ("" when no question is open)."""
    model: ModelInfo = field(default_factory=ModelInfo)
    """Facts about the shown model (read-only)."""
    view: ViewInfo = field(default_factory=ViewInfo)
    """Labels and notices of the image (read-only)."""
    stats: Stats = field(default_factory=Stats)
    """Timings and render facts (read-only)."""
    training: TrainingView = field(default_factory=TrainingView)
    """Live training (read-only except dataset_path and full_speed)."""

    def status_line(self) -> str:
        """The one line the status bar at the bottom of the view shows: the error, else the kernel compile, else
        the last message."""
        if self.error:
            return self.error
        if self.stats.compiling:
            from viewer.kernel_compiler import COMPILING_NOTICE
            return COMPILING_NOTICE + ": the view uses the CPU renderer meanwhile"
        return self.message
