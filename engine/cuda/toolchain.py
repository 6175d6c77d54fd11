"""The CUDA floor under every kernel of engine/cuda: is CUDA here, whose context, compile a .cu file with NVRTC,
cache the result, load its functions and launch them on torch's current stream.

Layer: engine (torch only; cuda-python is imported lazily, on the first CUDA call; never imports engine.field, the
marcher or GL). The kernels' modules (marcher.py, grid_features.py, vq_adam.py) build on it.

- `cuda_unavailable_reason()`: None, or one line saying why CUDA cannot run here; `require_cuda()` raises
  `CudaUnavailable` with that line.
- `make_current(device)`, `cuda_device(device)`: the device's primary context (the one torch uses), current on this
  thread; a torch device with an explicit index.
- `check(result, what)`: unwraps cuda-python's (status, *values), raising `CudaError` on a bad status.
- `compile_source(source_path, options, arch, cubin)`: NVRTC on a .cu file and the headers it includes with
  `#include "name.cuh"` (from its own folder, e.g. common.cuh); `options` is anything with `defines()` and
  `ptxas_options()` (a frozen dataclass, so it can key caches).
- `compile_to_cache(source_path, options, arch, cubin)`: the same through the disk cache (~/.cache/vbnf/kernels;
  VBNF_CACHE_DIR overrides, VBNF_KERNEL_CACHE=0 turns it off), keyed by a hash of source, headers, target, NVRTC
  version and options. Needs NVRTC only, no GPU (bench/warm_kernel_cache.py).
- `load_functions(device, options, source_path, names)` / `launch_1d(...)`: a module's kernels, compiled on first use
  and kept for the process, and their one-dimensional launch with one struct argument (the training kernels).
- `FeatureWidthOptions(feat)`: the compile options of the training kernels (only the feature width, -DFEAT).
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.errors import VbnfError

log = logging.getLogger("vbnf.cuda")

MAX_LEVELS = 16  # octree levels / LODs the kernels' parameter structs have room for (MAX_LEVELS in common.cuh)


class CudaUnavailable(VbnfError):
    """The CUDA path cannot run here; str(e) is one line saying why."""


class CudaError(VbnfError):
    """A CUDA driver or NVRTC call failed; the message names the call and the error."""


# ---------------------------------------------------------------------------------------------------------------
# Availability


_UNAVAILABLE: list[str | None] = []  # memo of cuda_unavailable_reason()


def cuda_unavailable_reason() -> str | None:
    """None when the CUDA kernels can run in this process, else one line saying why not (checked once)."""
    if not _UNAVAILABLE:
        _UNAVAILABLE.append(_probe_cuda())
    return _UNAVAILABLE[0]


def _probe_cuda() -> str | None:
    try:
        from cuda.bindings import driver, nvrtc
    except ImportError as e:
        return f"cuda-python is not installed ({e}); pip install cuda-python"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device (built for CUDA {torch.version.cuda})"
    try:
        err, = driver.cuInit(0)
        if int(err) != 0:
            return f"cuInit failed: {error_name(err)}"
        err, count = driver.cuDeviceGetCount()
        if int(err) != 0 or count == 0:
            return f"the CUDA driver reports no device ({error_name(err)})"
    except Exception as e:  # the driver library itself is missing
        return f"no usable NVIDIA driver: {str(e).splitlines()[0]}"
    try:
        err, major, minor = nvrtc.nvrtcVersion()
    except Exception as e:
        return f"NVRTC is not available: {str(e).splitlines()[0]}"
    return None


def require_cuda() -> None:
    reason = cuda_unavailable_reason()
    if reason is not None:
        raise CudaUnavailable(f"CUDA rendering is unavailable: {reason}")


def error_name(err) -> str:
    """The driver's name for a CUresult (its str() when the driver cannot say)."""
    from cuda.bindings import driver
    try:
        e, name = driver.cuGetErrorName(err)
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:
        return str(err)


def check(result, what: str):
    """cuda-python returns (status, *values): raise on a bad status, return the values (one, a tuple, or None)."""
    status, *values = result
    if int(status) != 0:
        name = error_name(status) if "nvrtc" not in type(status).__name__.lower() else str(status)
        raise CudaError(f"{what} failed: {name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


# ---------------------------------------------------------------------------------------------------------------
# Contexts: the primary context of the device, shared with torch


_CONTEXTS: dict[int, object] = {}


def make_current(device: torch.device) -> None:
    """Makes the primary context of `device` (the one torch uses) current on this thread."""
    from cuda.bindings import driver
    index = device.index if device.index is not None else torch.cuda.current_device()
    ctx = _CONTEXTS.get(index)
    if ctx is None:
        torch.cuda.init()
        dev = check(driver.cuDeviceGet(index), "cuDeviceGet")
        ctx = check(driver.cuDevicePrimaryCtxRetain(dev), "cuDevicePrimaryCtxRetain")
        _CONTEXTS[index] = ctx
    current = check(driver.cuCtxGetCurrent(), "cuCtxGetCurrent")
    if current is None or int(current) != int(ctx):
        check(driver.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")


def cuda_device(device: torch.device | str | int | None = None) -> torch.device:
    """A torch CUDA device with an explicit index (default: torch's current device)."""
    if device is None:
        return torch.device("cuda", torch.cuda.current_device())
    device = torch.device(device) if not isinstance(device, int) else torch.device("cuda", device)
    if device.type != "cuda":
        raise ValueError(f"the CUDA kernels need a cuda device, got {device}")
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


# ---------------------------------------------------------------------------------------------------------------
# Compile (NVRTC) and cache on disk


_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)


def read_source(source_path: Path) -> tuple[str, dict[str, str]]:
    """The .cu file's text and {name: text} of the headers it includes with quotes (`#include "common.cuh"`),
    found in its own folder, recursively. NVRTC gets the headers as strings; the C++ host build finds them itself."""
    source = source_path.read_text()
    headers: dict[str, str] = {}
    todo = _INCLUDE.findall(source)
    while todo:
        name = todo.pop()
        if name not in headers:
            headers[name] = (source_path.parent / name).read_text()
            todo += _INCLUDE.findall(headers[name])
    return source, dict(sorted(headers.items()))


def kernel_cache_dir() -> Path | None:
    if os.environ.get("VBNF_KERNEL_CACHE", "1") == "0":
        return None
    root = os.environ.get("VBNF_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vbnf")
    return Path(root) / "kernels"


def nvrtc_target(compute_capability: tuple[int, int]) -> tuple[str, bool]:
    """(--gpu-architecture value, True for a cubin / False for PTX the driver JIT-compiles)."""
    from cuda.bindings import nvrtc
    cc = compute_capability[0] * 10 + compute_capability[1]
    try:
        n = check(nvrtc.nvrtcGetNumSupportedArchs(), "nvrtcGetNumSupportedArchs")
        archs = list(check(nvrtc.nvrtcGetSupportedArchs(), "nvrtcGetSupportedArchs") or [])[:n]
    except Exception:
        archs = [cc]
    if cc in archs:
        return f"sm_{cc}", True
    lower = [a for a in archs if a <= cc]
    return f"compute_{max(lower) if lower else min(archs)}", False


def compile_source(source_path: Path, options, arch: str, cubin: bool, extra: tuple[str, ...] = ()
                   ) -> tuple[bytes, str]:
    """NVRTC: the .cu file `source_path` (and the headers it includes) with `options` -> (cubin or PTX bytes,
    compiler log). `options` is anything with defines() and ptxas_options(). Raises CudaError with the log."""
    from cuda.bindings import nvrtc
    source, headers = read_source(source_path)
    prog = check(nvrtc.nvrtcCreateProgram(source.encode(), source_path.name.encode(), len(headers),
                                          [text.encode() for text in headers.values()],
                                          [name.encode() for name in headers]), "nvrtcCreateProgram")
    opts = [f"--gpu-architecture={arch}", "--std=c++17", "-lineinfo", *options.defines(),
            *options.ptxas_options(), *extra]
    try:
        status, = nvrtc.nvrtcCompileProgram(prog, len(opts), [o.encode() for o in opts])
        size = check(nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
        compile_log = _nvrtc_output(nvrtc.nvrtcGetProgramLog, prog, size, "nvrtcGetProgramLog")
        compile_log = compile_log.decode(errors="replace").rstrip("\x00").strip()
        if int(status) != 0:
            raise CudaError(f"NVRTC could not compile {source_path.name} ({' '.join(opts)}): {compile_log}")
        if cubin:
            size = check(nvrtc.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize")
            image = _nvrtc_output(nvrtc.nvrtcGetCUBIN, prog, size, "nvrtcGetCUBIN")
        else:
            size = check(nvrtc.nvrtcGetPTXSize(prog), "nvrtcGetPTXSize")
            image = _nvrtc_output(nvrtc.nvrtcGetPTX, prog, size, "nvrtcGetPTX")
        return image, compile_log
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def _nvrtc_output(get, prog, size: int, what: str) -> bytes:
    """What NVRTC's `get(prog, buffer)` (its log, PTX or cubin) writes into a new buffer of `size` bytes. The buffer
    is a bytearray, never a `bytes` object: those are immutable and may be shared (`b" " * 1` is CPython's single
    b" " object, and NVRTC writing the NUL of an empty log into it turned every later one-byte read of a space in
    the process into a NUL: torch.load then read the 32 of a checkpoint's shape as 0)."""
    buffer = bytearray(size)
    check(get(prog, buffer), what)
    return bytes(buffer)


def kernel_cache_file(source_path: Path, options, arch: str, cubin: bool) -> Path | None:
    """Where the disk cache keeps a variant: <stem>-<hash>.cubin|.ptx, the hash of the source and its headers, the
    target, the NVRTC version and the options (None when the cache is off)."""
    from cuda.bindings import nvrtc
    cache_dir = kernel_cache_dir()
    if cache_dir is None:
        return None
    source, headers = read_source(source_path)
    version = check(nvrtc.nvrtcVersion(), "nvrtcVersion")
    parts = [source, *(f"{name}\n{text}" for name, text in headers.items()), arch, str(tuple(version)),
             *options.defines(), *options.ptxas_options()]
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
    return cache_dir / f"{source_path.stem}-{digest}.{'cubin' if cubin else 'ptx'}"


def compile_to_cache(source_path: Path, options, arch: str, cubin: bool = True) -> tuple[bytes, str]:
    """The variant's cubin/PTX from the disk cache, else compiled by NVRTC and stored there (no GPU needed).

    Returns (image, "disk cache" or "compiled")."""
    path = kernel_cache_file(source_path, options, arch, cubin)
    if path is not None and path.is_file():
        return path.read_bytes(), "disk cache"
    image, compile_log = compile_source(source_path, options, arch, cubin)
    if compile_log:
        log.debug("NVRTC log for %s %s: %s", source_path.name, options, compile_log)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(image)
            os.replace(tmp, path)
        except OSError as e:
            log.debug("kernel cache not written (%s)", e)
    return image, "compiled"


def load_module(device: torch.device, options, source_path: Path) -> tuple[object, str, str]:
    """The compiled `source_path` loaded on `device` (its context made current): (CUmodule, target, "compiled" or
    "disk cache"). Not cached here: callers keep what they load."""
    from cuda.bindings import driver
    make_current(device)
    arch, cubin = nvrtc_target(torch.cuda.get_device_capability(device))
    image, origin = compile_to_cache(source_path, options, arch, cubin)
    return check(driver.cuModuleLoadData(image), f"cuModuleLoadData({source_path.name})"), arch, origin


# ---------------------------------------------------------------------------------------------------------------
# The training kernels: load once, launch in one dimension


@dataclass(frozen=True)
class FeatureWidthOptions:
    """Compile options of a training kernel (grid_features.cu, vq_adam.cu): only the feature width F (-DFEAT)."""

    feat: int = 16

    def defines(self) -> list[str]:
        return [f"-DFEAT={self.feat}"]

    def ptxas_options(self) -> list[str]:
        return []


_FUNCTIONS: dict[tuple, tuple] = {}
_FUNCTION_LOCK = threading.Lock()


def load_functions(device: torch.device, options, source_path: Path, names: tuple[str, ...]) -> tuple:
    """The kernels `names` of the .cu file `source_path`, compiled with `options` for `device`: NVRTC or the disk
    cache on first use, then kept for the process. For the training kernels (feature lookup, vq logits step); the
    marcher, with its constant memory and shared-memory attributes, loads its own (marcher.get_kernel)."""
    from cuda.bindings import driver
    key = (device.index, options, source_path, names)
    with _FUNCTION_LOCK:
        if key not in _FUNCTIONS:
            module, _, _ = load_module(device, options, source_path)
            _FUNCTIONS[key] = tuple(check(driver.cuModuleGetFunction(module, n.encode()), f"cuModuleGetFunction({n})")
                                    for n in names)
        return _FUNCTIONS[key]


def launch_1d(function, device: torch.device, params: ctypes.Structure, n_threads: int, block: int, name: str
              ) -> None:
    """Launch `function(params)` (one struct argument) on `device`'s current torch stream with n_threads threads in
    blocks of `block`. Makes the device's context current first: autograd runs backward on a thread of its own."""
    from cuda.bindings import driver
    if n_threads == 0:
        return
    make_current(device)
    args = (ctypes.c_void_p * 1)(ctypes.addressof(params))
    blocks = (n_threads + block - 1) // block
    stream = driver.CUstream(torch.cuda.current_stream(device).cuda_stream)
    check(driver.cuLaunchKernel(function, blocks, 1, 1, block, 1, 1, 0, stream, ctypes.addressof(args), 0),
          f"cuLaunchKernel({name})")
