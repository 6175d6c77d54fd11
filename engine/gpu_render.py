"""Rendering an InferenceField into a RenderTarget, with the fastest path this machine has.

Layer: engine (imports engine.cuda lazily through its marcher; never imports viewer/).

Paths ("cuda+interop", "cuda+upload", "cpu"), chosen by engine.render_policy.choose_renderer, which also says in
one log line which and why.

Public functions:
- `march_rays(field, camera, lod, mode, background)`: the CUDA kernel, one image as a CUDA tensor;
- `march_rays_torch(field, camera, lod, mode, background)`: its torch twin (engine.render.render_image on the
  camera's rays), the CPU fallback and the oracle in tests/test_march_rays.py;
- `render_camera_cuda(field, c2w, fx, fy, cx, cy, width, height, lod, mode, background)`: march_rays for a camera
  given by its parts (vbnf render, vbnf eval).
Both return float32 [H,W,3] (rgb, normal) or [H,W] (depth, samples, level), rows top to bottom.
"""
from __future__ import annotations

import torch

from engine.cuda.marcher import CudaMarcher, MarchTuning, PinholeCamera
from engine.cuda.toolchain import check, make_current, require_cuda
from engine.field import InferenceField
from engine.render import RENDER_MODES, RenderMode, render_image
from engine.render_policy import RenderChoice, RenderPath, choose_renderer
from engine.render_target import DeviceBufferTarget, GLTextureTarget, RenderTarget

Background = tuple[float, float, float]


def _is_wsl() -> bool:
    try:
        with open("/proc/version") as f:
            return "microsoft" in f.read().lower()
    except OSError:
        return False


def gl_interop_unavailable_reason() -> str | None:
    """None when the GL context current on this thread runs on a CUDA device usable for interop, else why not.

    Needs CUDA (see cuda_unavailable_reason) and a current GL context.
    """
    if _is_wsl():
        return "WSL has no CUDA-GL interop"
    try:
        from cuda.bindings import driver
        make_current(torch.device("cuda", torch.cuda.current_device()))
        count, devices = check(driver.cuGLGetDevices(4, driver.CUGLDeviceList.CU_GL_DEVICE_LIST_ALL),
                               "cuGLGetDevices")
    except Exception as e:
        return f"the GL context is not on a CUDA device ({str(e).splitlines()[0]})"
    if count == 0:
        return "the GL context is not on a CUDA device"
    current = torch.cuda.current_device()
    if current not in [int(d) for d in devices[:count]]:
        return f"the GL context runs on CUDA device(s) {[int(d) for d in devices[:count]]}, not on {current}"
    return None


# ---------------------------------------------------------------------------------------------------------------
# Public functions


def march_rays_torch(field: InferenceField, camera, lod: int, mode: RenderMode = "rgb",
                     background: Background = (1.0, 1.0, 1.0), chunk: int = 1 << 14) -> torch.Tensor:
    """The torch reference of march_rays: engine.render.render_image on the camera's rays, on the field's device.

    camera: PinholeCamera or engine.cameras.Cameras (first camera). Returns float32 [H,W,3] / [H,W].
    """
    cam = PinholeCamera.of(camera)
    origins, dirs = cam.rays(field.device)
    return render_image(field, origins, dirs, cam.width, cam.height, lod, mode, background, chunk)


_DEFAULT_MARCHERS: dict[int, CudaMarcher] = {}  # per device index: keeps uploaded fields between calls


def default_marcher(device: torch.device | str | int | None = None) -> CudaMarcher:
    """The CudaMarcher that march_rays and render_camera_cuda use when given none (one per device)."""
    require_cuda()
    marcher = CudaMarcher(device)
    return _DEFAULT_MARCHERS.setdefault(marcher.device.index, marcher)


def march_rays(field: InferenceField, camera, lod: int, mode: RenderMode = "rgb",
               background: Background = (1.0, 1.0, 1.0), marcher: CudaMarcher | None = None) -> torch.Tensor:
    """One image with the fused CUDA kernel: float32 [H,W,3] (rgb, normal) or [H,W] (depth, samples, level) on the
    GPU, rows top to bottom, the same image as march_rays_torch up to float rounding and early termination.

    field: an InferenceField on any device (uploaded once per field, cached by `marcher`); camera: PinholeCamera or
    engine.cameras.Cameras; lod: clamped to the LODs the field holds. Raises CudaUnavailable (one line) without CUDA.
    """
    if mode not in RENDER_MODES:
        raise ValueError(f"unknown render mode '{mode}': choose one of {', '.join(RENDER_MODES)}")
    marcher = marcher or default_marcher()
    cam = PinholeCamera.of(camera)
    target = DeviceBufferTarget(cam.width, cam.height)
    stream = marcher.stream()
    out = target.begin_cuda(mode, marcher.device, stream)
    marcher.march(field, cam, lod, mode, background, out)
    target.end_cuda(stream)
    return target.image()


def render_camera_cuda(field: InferenceField, c2w: torch.Tensor, fx: float, fy: float, cx: float, cy: float,
                       width: int, height: int, lod: int, mode: RenderMode = "rgb",
                       background: Background = (1.0, 1.0, 1.0), distortion=None) -> torch.Tensor:
    """march_rays for one camera given by its parts: c2w [3,4] or [4,4] (OpenGL convention), pinhole intrinsics in
    pixels, size in pixels, distortion: OpenCV k1, k2, p1, p2 (None: none). Returns float32 [H,W,3] / [H,W] on the
    GPU; the field stays uploaded between calls."""
    cam = PinholeCamera(torch.as_tensor(c2w, dtype=torch.float32), float(fx), float(fy), float(cx), float(cy),
                        int(width), int(height), PinholeCamera.lens(distortion))
    return march_rays(field, cam, lod, mode, background)


# ---------------------------------------------------------------------------------------------------------------
# Renderer


class Renderer:
    """Renders fields into RenderTargets along one path (engine.render_policy.choose_renderer picks it).

    The CUDA paths keep a CudaMarcher (compiled kernels, uploaded fields) on torch's current CUDA device and launch
    on torch's current stream; the CPU path calls march_rays_torch on a CPU copy of the field.
    """

    def __init__(self, choice: RenderChoice, tuning: MarchTuning = MarchTuning()):
        self.choice = choice
        self.marcher = CudaMarcher(tuning=tuning) if choice.path != "cpu" else None
        self._cpu_fields: dict[int, tuple[InferenceField, InferenceField]] = {}

    @property
    def path(self) -> RenderPath:
        return self.choice.path

    def render(self, field: InferenceField, camera, lod: int, mode: RenderMode = "rgb",
               background: Background = (1.0, 1.0, 1.0), target: RenderTarget | None = None) -> RenderTarget:
        """Renders one frame of `field` seen by `camera` at `lod` into `target` (resized to the camera first).

        camera: PinholeCamera (c2w, fx, fy, cx, cy, width, height) or engine.cameras.Cameras; mode: rgb, depth,
        normal, samples, level; background: rgb in [0,1]. Returns the target (a new DeviceBufferTarget if None).
        """
        if mode not in RENDER_MODES:
            raise ValueError(f"unknown render mode '{mode}': choose one of {', '.join(RENDER_MODES)}")
        cam = PinholeCamera.of(camera)
        if target is None:
            target = DeviceBufferTarget(cam.width, cam.height)
        target.resize(cam.width, cam.height)
        if self.marcher is None:
            target.write_image(march_rays_torch(self._cpu_field(field), cam, lod, mode, background), mode)
            return target
        stream = self.marcher.stream()
        out = target.begin_cuda(mode, self.marcher.device, stream, interop=self.path == "cuda+interop")
        try:
            display_scale = getattr(target, "display_scale", None)
            self.marcher.march(field, cam, lod, mode, background, out, display_scale=display_scale)
        finally:
            target.end_cuda(stream)
        return target

    def _cpu_field(self, field: InferenceField) -> InferenceField:
        if field.device.type == "cpu":
            return field
        entry = self._cpu_fields.get(id(field))
        if entry is None or entry[0] is not field:
            self._cpu_fields = {id(field): (field, field.to("cpu"))}
            entry = self._cpu_fields[id(field)]
        return entry[1]


def make_renderer(gl_available: bool, tuning: MarchTuning = MarchTuning()) -> Renderer:
    """A Renderer along the path engine.render_policy.choose_renderer picks here (it logs the choice)."""
    return Renderer(choose_renderer(gl_available=gl_available), tuning)


__all__ = ["RenderPath", "RenderChoice", "gl_interop_unavailable_reason", "march_rays",
           "march_rays_torch", "render_camera_cuda", "default_marcher", "Renderer", "make_renderer", "PinholeCamera", "DeviceBufferTarget",
           "GLTextureTarget", "RenderTarget"]
