"""The CUDA twin of engine/optim.py's `row_adam_reference` (row_adam.cu): one kernel per parameter and step instead
of a dozen gathers, element-wise ops and scatters over the touched rows (measured 7.9 ms per step for the vq b=6
logits at 256^3 with torch ops; docs/ENGINE.md).

    row_adam(param, rows, grad, exp_avg_sq, exp_avg, beta1, beta2, step_size, root_correction, eps)   (in place)
"""
from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.cuda.marcher import _check, compile_to_cache, make_current, nvrtc_target, require_cuda

SOURCE_PATH = Path(__file__).with_name("row_adam.cu")
THREADS = 256


@dataclass(frozen=True)
class RowAdamOptions:
    """row_adam.cu has one variant (the cache is keyed by options like the other kernels')."""

    def defines(self) -> list[str]:
        return []

    def ptxas_options(self) -> list[str]:
        return []


_FUNCTIONS: dict[int, object] = {}
_LOCK = threading.Lock()


def _function(device: torch.device):
    from cuda.bindings import driver
    with _LOCK:
        if device.index not in _FUNCTIONS:
            make_current(device)
            arch, cubin = nvrtc_target(torch.cuda.get_device_capability(device))
            image, _ = compile_to_cache(RowAdamOptions(), arch, cubin, source_path=SOURCE_PATH)
            module = _check(driver.cuModuleLoadData(image), "cuModuleLoadData(row_adam)")
            _FUNCTIONS[device.index] = _check(driver.cuModuleGetFunction(module, b"row_adam"), "cuModuleGetFunction")
        return _FUNCTIONS[device.index]


def row_adam_reason(device: torch.device) -> str | None:
    """None when the kernel runs on `device`, else why not (RowAdam then uses the torch reference)."""
    if device.type != "cuda":
        return "not a CUDA device"
    try:
        require_cuda()
        _function(torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device()))
    except Exception as e:
        return f"the row_adam kernel is unavailable ({str(e).splitlines()[0]})"
    return None


def row_adam(param: torch.Tensor, rows: torch.Tensor | None, grad: torch.Tensor, exp_avg_sq: torch.Tensor,
             exp_avg: torch.Tensor | None, beta1: float, beta2: float, step_size: float, root_correction: float,
             eps: float) -> None:
    """In place, on param's CUDA device and current stream. param, exp_avg_sq, exp_avg: float32 [N, K] contiguous;
    rows: int64 [n] unique (None: grad covers every row); grad: float32 [n, K]."""
    from cuda.bindings import driver
    device = param.device
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    tensors = [t for t in (param, grad, exp_avg_sq, exp_avg) if t is not None]
    if any(t.dtype != torch.float32 or not t.is_contiguous() or t.device != param.device for t in tensors) or (
            rows is not None and (rows.dtype != torch.int64 or not rows.is_contiguous())):
        raise ValueError("row_adam: float32 contiguous tensors (and int64 rows) on one device expected")
    n, width = grad.shape
    if n == 0:
        return
    function = _function(device)
    make_current(device)
    values = [ctypes.c_void_p(0 if rows is None else rows.data_ptr()), ctypes.c_void_p(grad.data_ptr()),
              ctypes.c_void_p(param.data_ptr()), ctypes.c_void_p(exp_avg_sq.data_ptr()),
              ctypes.c_void_p(0 if exp_avg is None else exp_avg.data_ptr()), ctypes.c_longlong(n),
              ctypes.c_int(width), ctypes.c_float(beta1), ctypes.c_float(beta2), ctypes.c_float(step_size),
              ctypes.c_float(root_correction), ctypes.c_float(eps)]
    args = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
    blocks = (n * width + THREADS - 1) // THREADS
    stream = driver.CUstream(torch.cuda.current_stream(device).cuda_stream)
    _check(driver.cuLaunchKernel(function, blocks, 1, 1, THREADS, 1, 1, 0, stream, ctypes.addressof(args), 0),
           "cuLaunchKernel(row_adam)")
