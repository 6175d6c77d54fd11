"""The CUDA twin of engine/optim.py's `vq_adam_reference` (vq_adam.cu): the vq logits' straight-through gradient and
Adam step in one kernel per level and step. It replaces, per level, a host synchronisation (finding the touched rows),
a dozen gathers and element-wise ops over them, a sparse gradient and a separate Adam kernel (docs/ENGINE.md).

    vq_adam(logits, codebook, grad_table, exp_avg_sq, exp_avg, estimator, beta1, beta2, step_size, root_correction,
            eps)   (in place on logits, exp_avg_sq, exp_avg)
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from engine.cuda.marcher import FeatureWidthOptions, cuda_device, launch_1d, load_functions, require_cuda
from engine.grids import ESTIMATORS

SOURCE_PATH = Path(__file__).with_name("vq_adam.cu")
THREADS = 256  # 8 warps, one corner row each


class VQAdamParams(ctypes.Structure):
    """ctypes twin of `struct VQAdamParams` in vq_adam.cu (the host build checks the layout)."""

    _fields_ = [
        ("grad_table", ctypes.c_void_p),
        ("codebook", ctypes.c_void_p),
        ("logits", ctypes.c_void_p),
        ("exp_avg_sq", ctypes.c_void_p),
        ("exp_avg", ctypes.c_void_p),
        ("n_rows", ctypes.c_longlong),
        ("k", ctypes.c_int),
        ("reinmax", ctypes.c_int),
        ("beta1", ctypes.c_float),
        ("beta2", ctypes.c_float),
        ("step_size", ctypes.c_float),
        ("root_correction", ctypes.c_float),
        ("eps", ctypes.c_float),
    ]
    LAYOUT_FIELDS = ("grad_table", "codebook", "logits", "exp_avg_sq", "exp_avg", "n_rows", "k", "reinmax", "beta1",
                     "beta2", "step_size", "root_correction", "eps")


def vq_adam_params(logits: torch.Tensor, codebook: torch.Tensor, grad_table: torch.Tensor,
                   exp_avg_sq: torch.Tensor, exp_avg: torch.Tensor | None, estimator: str, beta1: float,
                   beta2: float, step_size: float, root_correction: float, eps: float) -> VQAdamParams:
    """The kernel's parameters. logits, exp_avg_sq, exp_avg: float32 [N, K]; codebook: float32 [K, F];
    grad_table: float32 [N, F]; all contiguous on one device (ValueError otherwise). estimator: "ste" or "reinmax"
    (engine.grids.ste_gradient)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"vq_adam: unknown estimator '{estimator}'")
    tensors = [t for t in (logits, codebook, grad_table, exp_avg_sq, exp_avg) if t is not None]
    n, k = logits.shape
    shapes_ok = (codebook.shape[0] == k and grad_table.shape == (n, codebook.shape[1]) and
                 exp_avg_sq.shape == logits.shape and (exp_avg is None or exp_avg.shape == logits.shape))
    if not shapes_ok or any(t.dtype != torch.float32 or not t.is_contiguous() or t.device != logits.device
                            for t in tensors):
        raise ValueError("vq_adam: float32 contiguous tensors of matching shapes on one device expected")
    return VQAdamParams(grad_table.data_ptr(), codebook.data_ptr(), logits.data_ptr(), exp_avg_sq.data_ptr(),
                        0 if exp_avg is None else exp_avg.data_ptr(), n, k, int(estimator == "reinmax"), beta1,
                        beta2, step_size, root_correction, eps)


def vq_adam_reason(device: torch.device, feature_dim: int = 16) -> str | None:
    """None when the kernel runs on `device`, else why not (VQLogitsAdam then uses the torch reference)."""
    if device.type != "cuda":
        return "not a CUDA device"
    try:
        require_cuda()
        load_functions(cuda_device(device), FeatureWidthOptions(feature_dim), SOURCE_PATH, ("vq_adam",))
    except Exception as e:
        return f"the vq_adam kernel is unavailable ({str(e).splitlines()[0]})"
    return None


def vq_adam(logits: torch.Tensor, codebook: torch.Tensor, grad_table: torch.Tensor, exp_avg_sq: torch.Tensor,
            exp_avg: torch.Tensor | None, estimator: str, beta1: float, beta2: float, step_size: float,
            root_correction: float, eps: float) -> None:
    """In place, on the logits' CUDA device and current stream (arguments: `vq_adam_params`)."""
    device = cuda_device(logits.device)
    params = vq_adam_params(logits, codebook, grad_table, exp_avg_sq, exp_avg, estimator, beta1, beta2, step_size,
                            root_correction, eps)
    function, = load_functions(device, FeatureWidthOptions(int(codebook.shape[1])), SOURCE_PATH, ("vq_adam",))
    launch_1d(function, device, params, params.n_rows * 32, THREADS, "vq_adam")  # one warp per row
