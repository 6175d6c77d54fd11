"""The host side of march_rays.cu, the fused inference ray marcher: the field's layout on the GPU, the kernel's
parameter struct, its compiled variants and one frame's launch on torch's current stream.

Layer: engine (torch, numpy; the CUDA toolchain of engine/cuda/toolchain.py, which imports cuda-python lazily). Never
imports GL: render targets hand the marcher a `CudaOutput` (a device pointer or a surface object). The public pair
`march_rays` / `march_rays_torch` is in engine/gpu_render.py.

- `KernelOptions` / `get_kernel(device, options)`: a compiled variant (every option a -D define), cached per
  (device, options) in process and on disk (toolchain.compile_to_cache).
- `GpuField.from_field(field, device)`: the field's arrays in the layout the kernel reads (docs/CUDA.md).
- `CudaMarcher`: uploads fields once (cached by identity and tensor versions) and launches one frame.
- `MarchParams`: the kernel's parameter struct (ctypes twin of `struct Params` in march_rays.cu).
"""
from __future__ import annotations

import ctypes
import logging
import math
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from engine.cameras import normalized_coordinates, pixel_centers
from engine.cuda.toolchain import MAX_LEVELS, check, cuda_device, load_module, make_current, require_cuda
from engine.decoder import DIR_DIM, GEO_DIM, HIDDEN
from engine.field import InferenceField, check_decoder
from engine.modes import MODE_IDS, RENDER_MODES  # ids: rgb 0, depth 1, normal 2, samples 3, level 4 (as the shader)
from engine.render import EARLY_STOP, field_step, samples_per_ray_bound

log = logging.getLogger("vbnf.cuda")

SOURCE_PATH = Path(__file__).with_name("march_rays.cu")
ENC_FLOAT, ENC_RGBA8, ENC_RGBA32F = 0, 1, 2
SHARED_CODEBOOK_BYTES = 48 * 1024  # codebooks up to this size (all LODs together) go to shared memory
OUT1 = 1 + GEO_DIM
assert EARLY_STOP == 1e-4  # hard-coded in march_rays.cu


# ---------------------------------------------------------------------------------------------------------------
# Kernel variants: options, load, cache


@dataclass(frozen=True)
class KernelOptions:
    """One compiled variant of march_rays.cu (every field is a -D define; see the file's header)."""

    feat: int = 16
    base_level: int = 2
    n_lods: int = 6
    mode: int = 0
    codes: int = 0         # 0 dense, 8 or 16: byte-aligned codebook indices per cell corner
    cb_rows: int = 0       # codebook rows (2^bits) for codebook kinds
    cb_shared: bool = False
    w_shared: bool = False
    path_cache: bool = True
    block: tuple[int, int] = (16, 8)  # threads per block (x, y); persistent: 1-D blocks of x * y threads
    persistent: bool = False
    mlp_rolled: bool = True

    def defines(self) -> list[str]:
        return [f"-DFEAT={self.feat}", f"-DBASE_LEVEL={self.base_level}", f"-DN_LODS={self.n_lods}",
                f"-DMODE={self.mode}", f"-DCODES={self.codes}", f"-DCB_ROWS={self.cb_rows}",
                f"-DCB_SHARED={int(self.cb_shared)}", f"-DW_SHARED={int(self.w_shared)}",
                f"-DPATH_CACHE={int(self.path_cache)}", f"-DBLOCK_X={self.block[0]}", f"-DBLOCK_Y={self.block[1]}",
                f"-DPERSISTENT={int(self.persistent)}", f"-DMLP_ROLLED={int(self.mlp_rolled)}"]

    def ptxas_options(self) -> list[str]:
        """Extra ptxas flags per variant (none now: the normal-mode gradient pass is written so -O3 does not spill;
        see docs/research/2026-11-25-cuda-marcher-versions.md)."""
        return []

    def shared_bytes(self) -> int:
        """Dynamic shared memory: [decoder][codebooks][MLP scratch], as SCR_BASE etc. in march_rays.cu."""
        n = 0
        if self.w_shared:
            n += (decoder_size(self.feat) + 3) // 4 * 4 * 4
        if self.cb_shared and self.codes:
            n += self.n_lods * self.cb_rows * self.feat * 4
        if self.mlp_rolled:
            n += max(HIDDEN, self.feat, GEO_DIM + DIR_DIM) * self.block[0] * self.block[1] * 4
        return n


def decoder_size(feat: int) -> int:
    """Floats in the packed decoder (DEC_SIZE in march_rays.cu)."""
    return feat * HIDDEN + HIDDEN + HIDDEN * OUT1 + OUT1 + (GEO_DIM + DIR_DIM) * HIDDEN + HIDDEN + HIDDEN * 3 + 3


def pack_decoder(decoder: dict[str, torch.Tensor]) -> torch.Tensor:
    """float32 [DEC_SIZE]: w0, b0, w1, b1, w2, b2, w3, b3 flattened row-major (input index major)."""
    return torch.cat([decoder[k].detach().float().reshape(-1) for k in ("w0", "b0", "w1", "b1", "w2", "b2",
                                                                       "w3", "b3")]).contiguous()


@dataclass
class Kernel:
    """A loaded variant: the module, its function and its __constant__ decoder slot."""

    options: KernelOptions
    module: object
    function: object
    const_ptr: int      # device address of c_dec (0 when W_SHARED)
    const_bytes: int
    const_owner: object = None  # token of the GpuField whose decoder c_dec holds now
    source: str = ""    # "compiled" or "disk cache"
    resident_blocks: int = 0  # persistent variant: blocks that fit the GPU at once (grid size)


_KERNELS: dict[tuple[int, KernelOptions], Kernel] = {}
_KERNEL_LOCK = threading.Lock()


def get_kernel(device: torch.device, options: KernelOptions) -> Kernel:
    """The variant `options` on `device`, compiled on first use (or read from the disk cache) and kept."""
    require_cuda()
    device = cuda_device(device)
    key = (device.index, options)
    with _KERNEL_LOCK:
        kernel = _KERNELS.get(key)
        if kernel is None:
            kernel = _load_kernel(device, options)
            _KERNELS[key] = kernel
        return kernel


def _load_kernel(device: torch.device, options: KernelOptions) -> Kernel:
    from cuda.bindings import driver
    module, arch, origin = load_module(device, options, SOURCE_PATH)
    function = check(driver.cuModuleGetFunction(module, b"march_rays"), "cuModuleGetFunction")
    shared = options.shared_bytes()
    if shared > 48 * 1024:
        check(driver.cuFuncSetAttribute(
            function, driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, shared),
            "cuFuncSetAttribute")
    const_ptr, const_bytes = 0, 0
    if not options.w_shared:
        ptr, const_bytes = check(driver.cuModuleGetGlobal(module, b"c_dec"), "cuModuleGetGlobal(c_dec)")
        const_ptr = int(ptr)
    resident = 0
    if options.persistent:
        threads = options.block[0] * options.block[1]
        per_sm = check(driver.cuOccupancyMaxActiveBlocksPerMultiprocessor(function, threads, shared),
                       "cuOccupancyMaxActiveBlocksPerMultiprocessor")
        resident = max(1, int(per_sm)) * torch.cuda.get_device_properties(device).multi_processor_count
    log.debug("march_rays %s for %s (%s)", arch, options, origin)
    return Kernel(options, module, function, const_ptr, const_bytes, source=origin, resident_blocks=resident)


# ---------------------------------------------------------------------------------------------------------------
# The field on the device


class MarchParams(ctypes.Structure):
    """ctypes twin of `struct Params` (march_rays.cu); field order and types must match it exactly."""

    _fields_ = [
        ("nodes", ctypes.c_void_p * MAX_LEVELS),
        ("cell_rows", ctypes.c_void_p * MAX_LEVELS),
        ("rows", ctypes.c_void_p * MAX_LEVELS),
        ("decoder", ctypes.c_void_p),
        ("out", ctypes.c_void_p),
        ("counter", ctypes.c_void_p),
        ("pixel_xy", ctypes.c_void_p),
        ("surface", ctypes.c_uint64),
        ("pitch", ctypes.c_int64),
        ("c2w", ctypes.c_float * 12),
        ("fx", ctypes.c_float), ("fy", ctypes.c_float), ("cx", ctypes.c_float), ("cy", ctypes.c_float),
        ("center", ctypes.c_float * 3),
        ("half_size", ctypes.c_float),
        ("inv_size", ctypes.c_float),
        ("step", ctypes.c_float),
        ("background", ctypes.c_float * 3),
        ("display_scale", ctypes.c_float),
        ("rgb_min_weight", ctypes.c_float),
        ("width", ctypes.c_int), ("height", ctypes.c_int),
        ("level", ctypes.c_int),
        ("lod", ctypes.c_int),
        ("root_present", ctypes.c_int),
        ("encoding", ctypes.c_int),
        ("flip_y", ctypes.c_int),
        ("pad_", ctypes.c_int),
    ]

    # Field names in the order march_params_layout() (host build) reports their offsets, then sizeof.
    LAYOUT_FIELDS = ("nodes", "cell_rows", "rows", "decoder", "out", "counter", "pixel_xy", "surface", "pitch", "c2w",
                     "fx", "center", "half_size", "inv_size", "step", "background", "display_scale", "rgb_min_weight",
                     "width", "level", "lod", "root_present", "encoding", "flip_y")


_TOKENS = iter(range(1, 1 << 62))


@dataclass
class GpuField:
    """An InferenceField in the kernel's layout, on one device (tensors kept alive here).

    nodes:     per octree level l < base_level + n_lods - 1, int32 [n_l, 2] = (child_mask, child_start).
    cell_rows: per LOD, dense: int32 [n_cells, 8] corner-table rows; codebook kinds: uint8 / int16 (read as
               uint16) [n_cells, 8] = indices[corners], the codebook row of each corner of each cell.
    rows:      per LOD, float32 dense features [n_corners, F] or codebook [cb_rows, F] (a level's 2^bits rows, then
               zero rows up to the largest codebook's size).
    decoder:   float32 [decoder_size(F)] (pack_decoder).
    """

    device: torch.device
    feat: int
    base_level: int
    n_lods: int
    codes: int
    cb_rows: int
    nodes: list[torch.Tensor]
    cell_rows: list[torch.Tensor]
    rows: list[torch.Tensor]
    decoder: torch.Tensor
    center: tuple[float, float, float]
    half_size: float
    step: float
    root_present: bool
    token: int

    @staticmethod
    def from_field(field: InferenceField, device: torch.device | str) -> "GpuField":
        device = torch.device(device)
        samples_per_ray_bound(field)  # RenderError (one line) for a level count or scene box no renderer marches
        n_lods = field.max_lod + 1
        feat = field.feature_dim
        check_decoder(field.decoder, feat)
        finest = field.base_level + n_lods - 1
        if finest >= MAX_LEVELS:
            raise ValueError(f"the CUDA marcher supports octree levels < {MAX_LEVELS}, the field needs {finest}")
        if field.octree.max_level < finest:
            raise ValueError(f"the field's octree has levels 0..{field.octree.max_level}, its LODs need {finest}")
        kinds = {r.features is None for r in field.levels}
        if len(kinds) != 1:
            raise ValueError("the field mixes dense and codebook levels")
        codebook = kinds.pop()
        nodes = []
        for level in range(finest):
            mask = field.octree.child_mask[level].to(torch.int32)
            start = field.octree.child_start[level].to(torch.int32)
            nodes.append(torch.stack([mask, start], dim=1).contiguous().to(device))
        cell_rows, rows = [], []
        cb_rows = 0
        for k, level_rows in enumerate(field.levels):
            corners = field.corners[k]
            if corners.ndim != 2 or corners.shape[1] != 8:
                raise ValueError(f"corners[{k}] must be [n_cells, 8], got {tuple(corners.shape)}")
            if not codebook:
                table = level_rows.features
                cell_rows.append(corners.to(torch.int32).contiguous().to(device))
            else:
                table = level_rows.codebook
                cb_rows = max(cb_rows, int(table.shape[0]))
                # gathered where the field lives (a training snapshot: on the GPU; a copy to the host and a gather
                # there took ~50 ms for lego's 1M cells, every live-training snapshot)
                cell_rows.append(level_rows.indices.to(device).long()[corners.to(device).long()])
            if table.ndim != 2 or table.shape[1] != feat:
                raise ValueError(f"level {k}: feature rows {tuple(table.shape)} do not match the decoder's F={feat}")
            rows.append(table.detach().float().contiguous().to(device))
        codes_bits = 0
        if codebook:
            if cb_rows > 1 << 16:
                raise ValueError(f"codebooks of {cb_rows} rows: the CUDA marcher supports at most 2^16")
            codes_bits = 8 if cb_rows <= 256 else 16
            # levels may have codebooks of their own sizes (bits per level): the kernel copies CB_ROWS rows of
            # every level to shared memory, so the smaller ones are padded with zero rows
            rows = [torch.nn.functional.pad(r, (0, 0, 0, cb_rows - r.shape[0])) for r in rows]
            # 8-bit codes as uint8; 16-bit ones as int16 holding the uint16 bit pattern (torch has no uint16 maths)
            cell_rows = [(c.to(torch.uint8) if codes_bits == 8 else torch.where(c >= 1 << 15, c - (1 << 16), c)
                          .to(torch.int16)).contiguous() for c in cell_rows]
        center = tuple(float(v) for v in field.scene_center.detach().float().cpu())
        return GpuField(device, feat, field.base_level, n_lods, codes_bits, cb_rows if codebook else 0, nodes,
                        cell_rows, rows, pack_decoder(field.decoder).to(device), center,
                        float(field.scene_half_size), float(field_step(field)),
                        field.octree.cells[0].numel() > 0, next(_TOKENS))

    def kernel_options(self, mode: str, tuning: "MarchTuning") -> KernelOptions:
        if mode not in MODE_IDS:
            raise ValueError(f"unknown render mode '{mode}': choose one of {', '.join(RENDER_MODES)}")
        cb_bytes = self.n_lods * self.cb_rows * self.feat * 4
        cb_shared = bool(self.codes) and (tuning.cb_shared if tuning.cb_shared is not None
                                          else cb_bytes <= SHARED_CODEBOOK_BYTES)
        return KernelOptions(self.feat, self.base_level, self.n_lods, MODE_IDS[mode], self.codes,
                             self.cb_rows if self.codes else 0, cb_shared, tuning.w_shared, tuning.path_cache,
                             tuning.block, tuning.persistent, tuning.mlp_rolled)


def field_signature(field: InferenceField) -> tuple:
    """Identity of the tensors a GpuField is built from (data pointers, shapes, in-place version counters)."""
    tensors = [*field.octree.child_mask, *field.octree.child_start, *field.corners, *field.decoder.values(),
               field.scene_center]
    for r in field.levels:
        tensors += [t for t in (r.codebook, r.indices, r.features) if t is not None]
    return (field.metadata.get("version"), field.scene_half_size, field.base_level, field.n_lods,
            tuple((t.data_ptr(), tuple(t.shape), getattr(t, "_version", 0)) for t in tensors))


# ---------------------------------------------------------------------------------------------------------------
# Camera


@dataclass(frozen=True)
class PinholeCamera:
    """One pinhole camera, optionally with lens distortion (the repo's convention: OpenGL/NeRF camera frame, pixels
    from the top left).

    c2w: float [3,4] or [4,4] camera-to-world (x right, y up, looks down -z; column 3 is the centre).
    fx, fy: focal lengths, pixels; cx, cy: principal point, pixels (pixel centres at i + 0.5); width, height: pixels;
    distortion: OpenCV k1, k2, p1, p2 (engine/cameras.py), all zero for none.
    """

    c2w: torch.Tensor
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    distortion: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    @staticmethod
    def of(camera, index: int = 0) -> "PinholeCamera":
        """A PinholeCamera from itself or from engine.cameras.Cameras (camera `index`)."""
        if isinstance(camera, PinholeCamera):
            return camera
        c2w = torch.as_tensor(camera.c2w, dtype=torch.float32)
        if c2w.ndim == 3:
            c2w = c2w[index]
        return PinholeCamera(c2w, float(camera.fx), float(camera.fy), float(camera.cx), float(camera.cy),
                             int(camera.width), int(camera.height),
                             PinholeCamera.lens(getattr(camera, "distortion", None)))

    @staticmethod
    def lens(distortion) -> tuple[float, float, float, float]:
        """Distortion coefficients (None, a tensor or a sequence of k1, k2, p1, p2) as the `distortion` field holds
        them; ValueError unless there are 4."""
        k = (0.0,) * 4 if distortion is None else tuple(float(v) for v in torch.as_tensor(distortion).reshape(-1))
        if len(k) != 4:
            raise ValueError(f"distortion must be 4 values (k1, k2, p1, p2), got {len(k)}")
        return k

    @property
    def distorted(self) -> bool:
        return any(v != 0.0 for v in self.distortion)

    def pixel_xy(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Normalised image coordinates of every pixel centre, undistorted when the lens distorts
        (engine/cameras.normalized_coordinates, as training's rays): float32 [H*W, 2], row-major."""
        px, py = pixel_centers(self.width, self.height, device)
        x, y = normalized_coordinates(px, py, self.fx, self.fy, self.cx, self.cy,
                                      torch.tensor(self.distortion, dtype=torch.float64))
        return torch.stack([x, y], dim=-1).contiguous()

    def c2w_rows(self) -> list[float]:
        """The 3x4 camera-to-world matrix, row-major, as 12 Python floats."""
        m = torch.as_tensor(self.c2w, dtype=torch.float32).detach().cpu()
        if tuple(m.shape) not in ((3, 4), (4, 4)):
            raise ValueError(f"c2w must be [3,4] or [4,4], got {list(m.shape)}")
        return [float(v) for v in m[:3].reshape(-1)]

    def rays(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """origins, unit dirs [H*W,3] float32 through the pixel centres, row-major (engine/cameras.rays_from_pixels)."""
        x, y = self.pixel_xy(device).unbind(-1)
        d_cam = torch.stack([x, -y, -torch.ones_like(x)], dim=-1)
        d_cam = d_cam / d_cam.norm(dim=-1, keepdim=True)
        c2w = torch.as_tensor(self.c2w, dtype=torch.float32).to(device)
        dirs = d_cam @ c2w[:3, :3].T
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        origins = c2w[:3, 3].expand(dirs.shape[0], 3).contiguous()
        return origins, dirs.contiguous()


# ---------------------------------------------------------------------------------------------------------------
# One frame


@dataclass(frozen=True)
class CudaOutput:
    """Where the kernel writes one frame: a linear buffer (ptr, pitch) or a surface object (GL interop)."""

    encoding: int        # ENC_FLOAT (3 or 1 float channels by mode), ENC_RGBA8, ENC_RGBA32F
    ptr: int = 0         # device address of row 0 (linear buffer)
    surface: int = 0     # CUsurfObject (0: linear buffer)
    pitch: int = 0       # bytes per row of the linear buffer
    flip_y: bool = False  # image row j written to row height-1-j


@dataclass(frozen=True)
class MarchTuning:
    """Kernel choices that change speed, not the image (rgb_min_weight changes it by at most that weight)."""

    w_shared: bool = True           # decoder weights in shared memory (False: __constant__ memory, 3x slower)
    cb_shared: bool | None = None   # codebooks in shared memory (None: when they fit SHARED_CODEBOOK_BYTES)
    path_cache: bool = True         # descent restarts at the deepest level shared with the previous sample
    rgb_min_weight: float = 1e-6    # samples of compositing weight below this skip the colour MLP
    block: tuple[int, int] = (16, 8)  # threads per block (x, y); the persistent kernel uses x * y in 1-D
    persistent: bool = False        # persistent threads refilling idle lanes from a pixel counter (slower on an
                                    # H100: docs/research/2026-11-25-cuda-marcher-versions.md)
    mlp_rolled: bool = True         # MLP input loops rolled, inputs staged per thread in shared memory: 2x less
                                    # code, 127 registers, 2.2x faster than fully unrolled on an H100


def default_display_scale(mode: str, camera: PinholeCamera, gpu: GpuField) -> float:
    """Grey level per unit of a scalar mode in RGBA8 targets: depth up to the far side of the scene, samples up to
    64, level up to the finest level."""
    if mode == "depth":
        eye = torch.tensor(camera.c2w_rows()).reshape(3, 4)[:, 3]
        dist = float((eye - torch.tensor(gpu.center)).norm())
        return 1.0 / max(dist + math.sqrt(3.0) * gpu.half_size, 1e-6)
    if mode == "samples":
        return 1.0 / 64.0
    if mode == "level":
        return 1.0 / max(gpu.base_level + gpu.n_lods - 1, 1)
    return 1.0


def fill_params(gpu: GpuField, camera: PinholeCamera, lod: int, mode: str, background, output: CudaOutput,
                tuning: MarchTuning, display_scale: float | None = None, counter: int = 0,
                pixel_xy: torch.Tensor | None = None) -> MarchParams:
    """The kernel's parameter struct for one frame. pixel_xy: camera.pixel_xy() where the kernel runs, for a camera
    with lens distortion (kept alive by the caller until the kernel has run); None for a pinhole."""
    p = MarchParams()
    for l, t in enumerate(gpu.nodes):
        p.nodes[l] = t.data_ptr()
    for k in range(gpu.n_lods):
        p.cell_rows[k] = gpu.cell_rows[k].data_ptr()
        p.rows[k] = gpu.rows[k].data_ptr()
    p.decoder = gpu.decoder.data_ptr()
    p.out = output.ptr
    p.counter = counter
    if camera.distorted:
        if pixel_xy is None or tuple(pixel_xy.shape) != (camera.width * camera.height, 2):
            raise ValueError("a camera with lens distortion needs its pixel_xy table")
        p.pixel_xy = pixel_xy.data_ptr()
    p.surface = output.surface
    p.pitch = output.pitch
    p.c2w[:] = camera.c2w_rows()
    p.fx, p.fy, p.cx, p.cy = camera.fx, camera.fy, camera.cx, camera.cy
    p.center[:] = gpu.center
    p.half_size = gpu.half_size
    p.inv_size = float(np.float32(1.0) / np.float32(2.0 * gpu.half_size))
    p.step = gpu.step
    bg = [float(v) for v in torch.as_tensor(background, dtype=torch.float32).reshape(-1)]
    if len(bg) != 3:
        raise ValueError(f"background must be 3 floats (rgb), got {len(bg)}")
    p.background[:] = bg
    p.display_scale = default_display_scale(mode, camera, gpu) if display_scale is None else float(display_scale)
    p.rgb_min_weight = tuning.rgb_min_weight
    p.width, p.height = camera.width, camera.height
    lod = max(0, min(int(lod), gpu.n_lods - 1))
    p.lod = lod
    p.level = gpu.base_level + lod
    p.root_present = int(gpu.root_present)
    p.encoding = output.encoding
    p.flip_y = int(output.flip_y)
    return p


class CudaMarcher:
    """Renders InferenceFields with the fused kernel on one CUDA device, on torch's current stream.

    Fields are uploaded once and cached by identity and tensor versions (the last `max_fields` of them).
    """

    def __init__(self, device: torch.device | str | int | None = None, tuning: MarchTuning = MarchTuning(),
                 max_fields: int = 4):
        require_cuda()
        self.device = cuda_device(device)
        self.tuning = tuning
        self.max_fields = max_fields
        self._fields: OrderedDict[int, tuple[weakref.ref, tuple, GpuField]] = OrderedDict()
        self._counter = torch.zeros(1, dtype=torch.int32, device=self.device)  # persistent kernel's pixel counter
        self._pixel_xy: tuple[tuple, torch.Tensor] | None = None  # the last distorted camera's table, on the device

    def upload(self, field: InferenceField) -> GpuField:
        """The field's GpuField, uploaded on first use; re-uploaded when its tensors changed."""
        key = id(field)
        sig = field_signature(field)
        entry = self._fields.get(key)
        if entry is not None and entry[0]() is field and entry[1] == sig:
            self._fields.move_to_end(key)
            return entry[2]
        gpu = GpuField.from_field(field, self.device)
        self._fields[key] = (weakref.ref(field), sig, gpu)
        self._fields.move_to_end(key)
        while len(self._fields) > self.max_fields:
            self._fields.popitem(last=False)
        return gpu

    def stream(self) -> int:
        return torch.cuda.current_stream(self.device).cuda_stream

    def march(self, field: InferenceField | GpuField, camera, lod: int, mode: str, background,
              output: CudaOutput, display_scale: float | None = None, tuning: MarchTuning | None = None) -> None:
        """Launches one frame into `output` on torch's current stream (asynchronous: no synchronisation)."""
        from cuda.bindings import driver
        camera = PinholeCamera.of(camera)
        tuning = tuning or self.tuning
        make_current(self.device)
        gpu = field if isinstance(field, GpuField) else self.upload(field)
        options = gpu.kernel_options(mode, tuning)
        kernel = get_kernel(self.device, options)
        stream = driver.CUstream(self.stream())
        if not options.w_shared and kernel.const_owner != gpu.token:
            check(driver.cuMemcpyDtoDAsync(driver.CUdeviceptr(kernel.const_ptr),
                                           driver.CUdeviceptr(gpu.decoder.data_ptr()),
                                           gpu.decoder.numel() * 4, stream), "cuMemcpyDtoDAsync(c_dec)")
            kernel.const_owner = gpu.token
        if camera.width <= 0 or camera.height <= 0:
            return
        params = fill_params(gpu, camera, lod, mode, background, output, tuning, display_scale,
                             self._counter.data_ptr(), self._pixel_table(camera))
        args = (ctypes.c_void_p * 1)(ctypes.addressof(params))
        bx, by = options.block
        if options.persistent:
            self._counter.zero_()  # on torch's current stream, before the launch on the same stream
            jobs = ((camera.width + 7) // 8) * ((camera.height + 3) // 4)  # warps' worth of pixels
            grid = (max(1, min(kernel.resident_blocks, (jobs * 32 + bx * by - 1) // (bx * by))), 1)
            bx, by = bx * by, 1
        else:
            grid = ((camera.width + bx - 1) // bx, (camera.height + by - 1) // by)
        check(driver.cuLaunchKernel(kernel.function, grid[0], grid[1], 1, bx, by, 1,
                                    options.shared_bytes(), stream, ctypes.addressof(args), 0),
              "cuLaunchKernel(march_rays)")


    def _pixel_table(self, camera: PinholeCamera) -> torch.Tensor | None:
        """camera.pixel_xy on the device for a distorted camera (kept for the next frame of the same intrinsics:
        an evaluation's views share them), else None."""
        if not camera.distorted:
            return None
        key = (camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height, camera.distortion)
        if self._pixel_xy is None or self._pixel_xy[0] != key:
            self._pixel_xy = (key, camera.pixel_xy(self.device))
        return self._pixel_xy[1]


def mode_channels(mode: str) -> int:
    """Float channels of a mode's image: 3 (rgb, normal) or 1 (depth, samples, level)."""
    return 3 if mode in ("rgb", "normal") else 1


def host_reference_options(gpu: GpuField, mode: str, tuning: MarchTuning = MarchTuning()) -> KernelOptions:
    """The variant a host (CPU) build of march_rays.cu needs for `gpu` (tests): never shared memory."""
    return replace(gpu.kernel_options(mode, tuning), cb_shared=False, w_shared=False, persistent=False)
