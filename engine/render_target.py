"""Where a renderer writes a frame: the RenderTarget interface and its two implementations.

Layer: engine. This is the only engine module that touches GL objects (with engine.gl_ext, which it calls for the
GL functions moderngl lacks), and only through the texture it is handed (moderngl is imported lazily, by
`egl_context` alone).

- `DeviceBufferTarget(width, height)`: plain memory. After `Renderer.render`, `image()` is the frame as a float32
  tensor [H,W,3] (rgb, normal) or [H,W] (depth, samples, level), on the GPU for the CUDA paths and on the CPU for
  the torch fallback; `numpy()` copies it to the host. Same layout as engine.render.render_image.
- `GLTextureTarget(ctx, texture, interop=...)`: an RGBA8 or RGBA32F GL_TEXTURE_2D (a moderngl Texture). CUDA-GL
  interop comes in three variants, each set up once per size and device:
  "image": the texture is registered (cuGraphicsGLRegisterImage, surface load/store), mapped once per
  frame and written by the kernel with surface stores (no copy);
  "buffer": a GL pixel buffer is registered (cuGraphicsGLRegisterBuffer) and mapped once per frame, the kernel
  writes it as linear memory and GL copies it into the texture on the GPU;
  "external": CUDA allocates the frame memory (virtual-memory API) and exports it as a POSIX fd that GL imports as
  a buffer (GL_EXT_memory_object_fd), so nothing is mapped per frame; `end_cuda` waits on the CPU for the CUDA
  stream, GL copies the buffer into the texture on the GPU, and a GL fence keeps the next kernel from writing the
  buffer before that copy is done. The default: 0.09 ms per frame against 0.33 for "image" (H100, docs/CUDA.md);
  where the GL driver lacks the extensions it falls back to "image".
  Without interop (e.g. WSL, or GL on another GPU), or once it failed, the kernel writes a device buffer that is
  copied to the host and uploaded with texture.write. The target owns the texture:
  `resize()` replaces it (a no-op when the size is unchanged; read `.texture` after it) and `release()`
  unregisters and releases it, with the GL context still current.
Pixel layout in a texture: row 0 of the texture's data is the image's top row (what texture.write of a top-first
image gives); pass flip_y=True for bottom-up. RGBA8 holds rgb in [0,1], normals as 0.5 n + 0.5 and scalar modes as
grey value * display_scale; RGBA32F holds raw values (scalars in r, g and b), alpha 1.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod

import numpy as np
import torch

from engine.cuda.marcher import ENC_FLOAT, ENC_RGBA8, ENC_RGBA32F, CudaOutput, mode_channels
from engine.cuda.toolchain import make_current

log = logging.getLogger("vbnf.render")

GL_TEXTURE_2D = 0x0DE1


class RenderTarget(ABC):
    """A frame's destination. Renderers call begin_cuda/end_cuda around a CUDA launch, or write_image with a
    finished image (the CPU path)."""

    width: int
    height: int

    @abstractmethod
    def resize(self, width: int, height: int) -> None:
        """Changes the size in pixels; a no-op when it is unchanged."""

    @abstractmethod
    def begin_cuda(self, mode: str, device: torch.device, stream: int, interop: bool = True) -> CudaOutput:
        """Prepares one CUDA frame of `mode` on `stream` (a CUstream handle) and says where the kernel writes."""

    @abstractmethod
    def end_cuda(self, stream: int) -> None:
        """Finishes the frame begun by begin_cuda (unmap, or upload)."""

    @abstractmethod
    def write_image(self, image: torch.Tensor, mode: str) -> None:
        """Stores a finished image [H,W,3] or [H,W] (float32, any device): the CPU path."""

    def release(self) -> None:
        """Frees what the target holds."""


class DeviceBufferTarget(RenderTarget):
    """A float32 buffer [H,W,C] (C = 3 for rgb and normal, 1 for the scalar modes), reused between frames."""

    def __init__(self, width: int, height: int):
        self.width, self.height = int(width), int(height)
        self._buffer: torch.Tensor | None = None
        self._image: torch.Tensor | None = None

    def resize(self, width: int, height: int) -> None:
        if (int(width), int(height)) == (self.width, self.height):
            return
        self.width, self.height = int(width), int(height)
        self._buffer = self._image = None

    def begin_cuda(self, mode: str, device: torch.device, stream: int, interop: bool = True) -> CudaOutput:
        channels = mode_channels(mode)
        shape = (self.height, self.width, channels)
        if self._buffer is None or tuple(self._buffer.shape) != shape or self._buffer.device != device:
            self._buffer = torch.empty(shape, dtype=torch.float32, device=device)
        self._image = self._buffer if channels == 3 else self._buffer[..., 0]
        return CudaOutput(ENC_FLOAT, ptr=self._buffer.data_ptr(), pitch=self.width * channels * 4)

    def end_cuda(self, stream: int) -> None:
        pass

    def write_image(self, image: torch.Tensor, mode: str) -> None:
        self._image = image

    def image(self) -> torch.Tensor:
        """The last frame: float32 [H,W,3] or [H,W] (the CUDA buffer itself; later frames overwrite it)."""
        if self._image is None:
            raise RuntimeError("DeviceBufferTarget: nothing rendered yet")
        return self._image

    def numpy(self) -> np.ndarray:
        """The last frame on the host (waits for the GPU)."""
        return self.image().detach().cpu().numpy()

    def poison_(self, mode: str, device: torch.device | str) -> None:
        """Allocates the buffer for `mode` and fills it with NaN (tests: every pixel must be written)."""
        self.begin_cuda(mode, torch.device(device), 0)
        self._buffer.fill_(float("nan"))

    def release(self) -> None:
        self._buffer = self._image = None


def encode_rgba(image: torch.Tensor, mode: str, encoding: int, display_scale: float, flip_y: bool) -> np.ndarray:
    """A finished image [H,W,3] / [H,W] -> RGBA bytes as the kernel writes them (uint8 or float32 [H,W,4])."""
    image = image.detach().float().cpu()
    if image.ndim == 2:
        grey = image * display_scale if encoding == ENC_RGBA8 else image
        rgb = grey[..., None].expand(*image.shape, 3)
    elif mode == "normal" and encoding == ENC_RGBA8:
        rgb = 0.5 * image + 0.5
    else:
        rgb = image
    rgba = torch.cat([rgb, torch.ones_like(rgb[..., :1])], dim=-1)
    if flip_y:
        rgba = rgba.flip(0)
    if encoding == ENC_RGBA8:
        return (rgba.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()
    return rgba.contiguous().numpy()


class GLTextureTarget(RenderTarget):
    """A GL texture the renderer writes into (RGBA8 or RGBA32F, GL_TEXTURE_2D); see the module docstring.

    ctx: the moderngl context the texture belongs to (current on this thread); texture: a moderngl Texture with 4
    components and dtype 'f1' or 'f4' (the target takes ownership). flip_y: write the image bottom-up.
    display_scale: grey level per unit for scalar modes in RGBA8 (None: the renderer's default per mode).
    """

    def __init__(self, ctx, texture, flip_y: bool = False, display_scale: float | None = None,
                 write_discard: bool = True, interop: str = "external"):
        if texture.components != 4 or texture.dtype not in ("f1", "f4"):
            raise ValueError(f"GLTextureTarget needs an RGBA8 or RGBA32F texture, got {texture.components} "
                             f"components of dtype {texture.dtype}")
        self.ctx = ctx
        self.texture = texture
        self.flip_y = flip_y
        self.display_scale = display_scale
        self.width, self.height = texture.size
        self.encoding = ENC_RGBA8 if texture.dtype == "f1" else ENC_RGBA32F
        self.interop_error: str | None = None  # why interop was given up, once it was
        self.external_error: str | None = None  # why "external" gave way to "image", once it did
        self._resource = None        # CUgraphicsResource while registered
        self._mapped = False
        self._surface = 0            # CUsurfObject of the mapped array
        self._surface_array = None   # the CUarray it was made for
        self._device: torch.device | None = None
        self._upload: torch.Tensor | None = None
        self._mode = "rgb"
        if interop not in ("image", "buffer", "external"):
            raise ValueError(f"interop must be 'image', 'buffer' or 'external', got {interop!r}")
        self.interop = interop
        """'image': the texture itself is registered and written with surface stores; 'buffer': a GL pixel buffer
        is registered, the kernel writes it as linear memory, and GL copies it into the texture on the GPU;
        'external': like 'buffer', but the buffer is CUDA memory imported into GL once (GL_EXT_memory_object_fd),
        so nothing is mapped per frame (the CPU waits for the stream in end_cuda instead; see _ExternalBuffer)."""
        self._pbo = None             # the pixel buffer of interop 'buffer'
        self._external: _ExternalBuffer | None = None  # the shared buffer of interop 'external'
        self._external_frame = False  # a frame was begun in it (end_cuda copies it into the texture)
        self.write_discard = write_discard
        """Map with CU_GRAPHICS_MAP_RESOURCE_FLAGS_WRITE_DISCARD: every CUDA frame writes every pixel, so the driver
        need not keep the texture's old contents for CUDA (bench/render.py measures the difference)."""

    # -- size and lifetime ---------------------------------------------------------------------------------------

    def resize(self, width: int, height: int) -> None:
        if (int(width), int(height)) == (self.width, self.height):
            return
        self._unregister()
        dtype = self.texture.dtype
        self.texture.release()
        self.texture = self.ctx.texture((int(width), int(height)), 4, dtype=dtype)
        self.width, self.height = int(width), int(height)
        self._upload = None

    def release(self) -> None:
        self._unregister()
        if self.texture is not None:
            self.texture.release()
            self.texture = None
        self._upload = None

    # -- CUDA frames ---------------------------------------------------------------------------------------------

    def begin_cuda(self, mode: str, device: torch.device, stream: int, interop: bool = True) -> CudaOutput:
        self._mode = mode
        if interop and self.interop_error is None:
            try:
                return self._begin_interop(device, stream)
            except Exception as e:  # give interop up for this target, once, with one log line
                self._unregister()
                if self.interop == "external":  # e.g. a driver without GL_EXT_memory_object_fd: map per frame
                    self.external_error = str(e).splitlines()[0]
                    log.info("CUDA-GL interop 'external' unavailable (%s); using 'image'", self.external_error)
                    self.interop = "image"
                    return self.begin_cuda(mode, device, stream, interop)
                self.interop_error = str(e).splitlines()[0]
                log.warning("CUDA-GL interop failed (%s); rendering through a device buffer and texture.write",
                            self.interop_error)
        esize = 1 if self.encoding == ENC_RGBA8 else 4
        shape = (self.height, self.width, 4)
        if self._upload is None or tuple(self._upload.shape) != shape or self._upload.device != device:
            self._upload = torch.empty(shape, dtype=torch.uint8 if esize == 1 else torch.float32, device=device)
        return CudaOutput(self.encoding, ptr=self._upload.data_ptr(), pitch=self.width * 4 * esize,
                          flip_y=self.flip_y)

    def end_cuda(self, stream: int) -> None:
        if self._mapped:
            self._unmap(stream)
            return
        if self._external_frame:
            self._external_frame = False
            self._external.copy_to(self.texture, stream)
            return
        if self._upload is not None:
            self.texture.write(self._upload.cpu().numpy().tobytes())  # .cpu() waits for the frame

    def write_image(self, image: torch.Tensor, mode: str) -> None:
        scale = self.display_scale if self.display_scale is not None else 1.0
        self.texture.write(encode_rgba(image, mode, self.encoding, scale, self.flip_y).tobytes())

    # -- interop -------------------------------------------------------------------------------------------------

    def _begin_interop(self, device: torch.device, stream: int) -> CudaOutput:
        from cuda.bindings import driver

        from engine.cuda.toolchain import check
        make_current(device)
        if self.interop == "buffer":
            return self._begin_buffer_interop(device, stream)
        if self.interop == "external":
            return self._begin_external_interop(device)
        if self._resource is None or self._device != device:
            self._unregister()
            self._resource = check(driver.cuGraphicsGLRegisterImage(
                self.texture.glo, GL_TEXTURE_2D,
                int(driver.CUgraphicsRegisterFlags.CU_GRAPHICS_REGISTER_FLAGS_SURFACE_LDST)),
                "cuGraphicsGLRegisterImage")
            self._device = device
            if self.write_discard:
                check(driver.cuGraphicsResourceSetMapFlags(
                    self._resource, int(driver.CUgraphicsMapResourceFlags.CU_GRAPHICS_MAP_RESOURCE_FLAGS_WRITE_DISCARD)),
                    "cuGraphicsResourceSetMapFlags")
        s = driver.CUstream(stream)
        check(driver.cuGraphicsMapResources(1, self._resource, s), "cuGraphicsMapResources")
        self._mapped = True
        array = check(driver.cuGraphicsSubResourceGetMappedArray(self._resource, 0, 0),
                      "cuGraphicsSubResourceGetMappedArray")
        if self._surface_array is None or int(array) != int(self._surface_array):
            self._destroy_surface(stream)
            desc = driver.CUDA_RESOURCE_DESC()
            desc.resType = driver.CUresourcetype.CU_RESOURCE_TYPE_ARRAY
            desc.res.array.hArray = array
            self._surface = int(check(driver.cuSurfObjectCreate(desc), "cuSurfObjectCreate"))
            self._surface_array = array
        return CudaOutput(self.encoding, surface=self._surface, flip_y=self.flip_y)

    def _begin_buffer_interop(self, device: torch.device, stream: int) -> CudaOutput:
        from cuda.bindings import driver

        from engine.cuda.toolchain import check
        esize = 1 if self.encoding == ENC_RGBA8 else 4
        pitch = self.width * 4 * esize
        if self._resource is None or self._device != device:
            self._unregister()
            self._pbo = self.ctx.buffer(reserve=pitch * self.height)
            self._resource = check(driver.cuGraphicsGLRegisterBuffer(
                self._pbo.glo, int(driver.CUgraphicsRegisterFlags.CU_GRAPHICS_REGISTER_FLAGS_WRITE_DISCARD)),
                "cuGraphicsGLRegisterBuffer")
            self._device = device
        check(driver.cuGraphicsMapResources(1, self._resource, driver.CUstream(stream)), "cuGraphicsMapResources")
        self._mapped = True
        ptr, _ = check(driver.cuGraphicsResourceGetMappedPointer(self._resource),
                       "cuGraphicsResourceGetMappedPointer")
        return CudaOutput(self.encoding, ptr=int(ptr), pitch=pitch, flip_y=self.flip_y)

    def _begin_external_interop(self, device: torch.device) -> CudaOutput:
        pitch = self.width * 4 * (1 if self.encoding == ENC_RGBA8 else 4)
        if self._external is None or self._device != device:
            self._unregister()
            self._external = _ExternalBuffer(self.ctx, device, pitch * self.height)
            self._device = device
        self._external.wait_copied()  # the previous frame's GL copy out of the buffer is done
        self._external_frame = True
        return CudaOutput(self.encoding, ptr=self._external.ptr, pitch=pitch, flip_y=self.flip_y)

    def _unmap(self, stream: int) -> None:
        from cuda.bindings import driver

        from engine.cuda.toolchain import check
        self._mapped = False
        check(driver.cuGraphicsUnmapResources(1, self._resource, driver.CUstream(stream)),
              "cuGraphicsUnmapResources")
        if self._pbo is not None:
            self.texture.write(self._pbo)  # GPU copy, ordered after the unmap by the driver

    def _destroy_surface(self, stream: int) -> None:
        """Destroys the surface object once the work that may use it is done (destroying it earlier is undefined)."""
        if not self._surface:
            return
        from cuda.bindings import driver
        driver.cuStreamSynchronize(driver.CUstream(stream))
        driver.cuSurfObjectDestroy(self._surface)
        self._surface, self._surface_array = 0, None

    def _unregister(self) -> None:
        if self._external is not None:
            if self._device is not None:
                make_current(self._device)
            self._external.release()
            self._external, self._external_frame = None, False
        if self._resource is None:
            return
        from cuda.bindings import driver
        if self._device is not None:
            make_current(self._device)
        if self._mapped:
            self._unmap(0)
        driver.cuCtxSynchronize()
        self._destroy_surface(0)
        driver.cuGraphicsUnregisterResource(self._resource)
        self._resource = None
        if self._pbo is not None:
            self._pbo.release()
            self._pbo = None

    def describe(self) -> str:
        """One line for a stats panel: how frames reach the texture now (and why not a faster way)."""
        if self.interop_error is not None:
            return f"frames uploaded (interop failed: {self.interop_error})"
        if not self.interop_active():
            return "no CUDA frame yet"
        why = f" ('external' unavailable: {self.external_error})" if self.external_error else ""
        return f"CUDA-GL interop '{self.interop}'{why}"

    def interop_active(self) -> bool:
        """True once a frame went through interop (registered and not given up)."""
        return (self._resource is not None or self._external is not None) and self.interop_error is None


class _ExternalBuffer:
    """The frame buffer of interop 'external': nbytes of CUDA memory (virtual-memory API: cuMemCreate, exported as
    a POSIX fd) imported into GL as a buffer (GL_EXT_memory_object_fd), made once per size and device.

    ptr: its CUDA device address; buffer: the GL buffer (a moderngl Buffer wrapping it). Nothing is mapped per
    frame, and the two APIs cannot synchronise on the GPU: GL can only import semaphores (GL_EXT_semaphore_fd) and
    CUDA can only import them as well (cuImportExternalSemaphore), so without a third API that exports one (Vulkan)
    neither can signal the other. The CPU orders them instead: copy_to waits for the CUDA stream before GL copies the
    buffer, and wait_copied waits on a GL fence set after that copy before the next kernel may write the buffer.
    """

    def __init__(self, ctx, device: torch.device, nbytes: int):
        from engine import gl_ext
        missing = [e for e in ("GL_EXT_memory_object", "GL_EXT_memory_object_fd") if e not in ctx.extensions]
        if missing:
            raise RuntimeError(f"interop 'external' needs {' and '.join(missing)}, which this GL context lacks")
        self.ctx, self.gl, self.nbytes = ctx, gl_ext.current(), int(nbytes)
        self.size = 0            # bytes allocated (nbytes rounded up to the allocation granularity)
        self.handle = None       # CUmemGenericAllocationHandle
        self._va = None          # CUdeviceptr of the reserved range, mapped when self._mapped
        self._mapped = False
        self.ptr = 0
        self.memory = self._glo = 0  # GL memory object and buffer name
        self.buffer = None
        self.fence = 0           # GLsync after the last copy out of the buffer
        try:
            fd = self._allocate(device)
            self.memory, self._glo = self.gl.import_buffer(fd, self.size, self.nbytes)  # consumes fd
            self.buffer = ctx.external_buffer(self._glo, self.nbytes)
        except BaseException:
            self.release()
            raise

    def _allocate(self, device: torch.device) -> int:
        """Allocates, maps and exports self.size bytes on `device`; returns the fd (the caller owns it)."""
        from cuda.bindings import driver

        from engine.cuda.toolchain import check
        fd_type = driver.CUmemAllocationHandleType.CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR
        prop = driver.CUmemAllocationProp()
        prop.type = driver.CUmemAllocationType.CU_MEM_ALLOCATION_TYPE_PINNED
        prop.location.type = driver.CUmemLocationType.CU_MEM_LOCATION_TYPE_DEVICE
        prop.location.id = device.index if device.index is not None else torch.cuda.current_device()
        prop.requestedHandleTypes = fd_type
        granularity = check(driver.cuMemGetAllocationGranularity(
            prop, driver.CUmemAllocationGranularity_flags.CU_MEM_ALLOC_GRANULARITY_MINIMUM),
            "cuMemGetAllocationGranularity")
        self.size = -(-self.nbytes // int(granularity)) * int(granularity)
        self.handle = check(driver.cuMemCreate(self.size, prop, 0), "cuMemCreate")
        self._va = check(driver.cuMemAddressReserve(self.size, 0, 0, 0), "cuMemAddressReserve")
        check(driver.cuMemMap(self._va, self.size, 0, self.handle, 0), "cuMemMap")
        self._mapped = True
        access = driver.CUmemAccessDesc()
        access.location.type = prop.location.type
        access.location.id = prop.location.id
        access.flags = driver.CUmemAccess_flags.CU_MEM_ACCESS_FLAGS_PROT_READWRITE
        check(driver.cuMemSetAccess(self._va, self.size, [access], 1), "cuMemSetAccess")
        self.ptr = int(self._va)
        return int(check(driver.cuMemExportToShareableHandle(self.handle, fd_type, 0), "cuMemExportToShareableHandle"))

    def wait_copied(self) -> None:
        """Waits (CPU) until GL's copy out of the buffer is done, so a kernel may write it."""
        if self.fence:
            fence, self.fence = self.fence, 0
            self.gl.finish_fence(fence)

    def copy_to(self, texture, stream: int) -> None:
        """Waits (CPU) for the frame written on `stream` (a CUstream handle), copies the buffer into `texture` (a
        moderngl Texture of nbytes) on the GPU, and sets the fence wait_copied waits on."""
        from cuda.bindings import driver

        from engine.cuda.toolchain import check
        check(driver.cuStreamSynchronize(driver.CUstream(stream)), "cuStreamSynchronize")
        texture.write(self.buffer)
        self.fence = self.gl.fence_sync()

    def release(self) -> None:
        """Frees the GL objects (the GL context current), then the CUDA mapping, address range and allocation (the
        CUDA context of its device current). Statuses are ignored: it also cleans up after a failed __init__."""
        if self.fence:
            self.ctx.finish()
            self.gl.delete_sync(self.fence)
        if self.buffer is not None:
            self.buffer.release()  # moderngl leaves an external buffer's GL name alone
        if self._glo:
            self.gl.delete_buffer(self._glo)
        if self.memory:
            self.gl.delete_memory_object(self.memory)
        self.fence = self.memory = self._glo = 0
        self.buffer = None
        if self._va is not None or self.handle is not None:
            from cuda.bindings import driver
            driver.cuCtxSynchronize()
            if self._mapped:
                driver.cuMemUnmap(self._va, self.size)
            if self._va is not None:
                driver.cuMemAddressFree(self._va, self.size)
            if self.handle is not None:
                driver.cuMemRelease(self.handle)
        self._va = self.handle = None
        self._mapped, self.ptr = False, 0


def egl_context(require: int = 330):
    """(moderngl context on the GPU through EGL, None) for headless rendering, or (None, one-line reason)."""
    try:
        import moderngl
    except ImportError as e:
        return None, f"moderngl is not installed ({e})"
    try:
        return moderngl.create_standalone_context(backend="egl", require=require), None
    except Exception as e:
        return None, f"no EGL context: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
