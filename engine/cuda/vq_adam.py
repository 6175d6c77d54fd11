"""The vq logits' training step (engine/optim.py's VQLogitsAdam) and its two twins: the straight-through gradient of
the logits and an Adam step on the rows that have one.

    vq_adam(logits, codebook, grad_table, exp_avg_sq, exp_avg, estimator, beta1, beta2, step_size, root_correction,
            eps)         CUDA (vq_adam.cu): one kernel per level and step, in place on logits, exp_avg_sq, exp_avg
    vq_adam_torch(...)   the same step with torch ops, same arguments: the path off CUDA (or without NVRTC) and the
                         reference the tests compare the kernel with (tests/test_optim.py)

The kernel replaces, per level, a host synchronisation (finding the touched rows), a dozen gathers and element-wise
ops over them, a sparse gradient and a separate Adam kernel (docs/ENGINE.md). `row_adam` is the torch Adam step on
chosen rows (or all) that vq_adam_torch ends with and the softmax-relaxed warm-up uses on its dense gradient.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from engine import grids
from engine.cuda.toolchain import FeatureWidthOptions, cuda_device, launch_1d, load_functions, require_cuda

SOURCE_PATH = Path(__file__).with_name("vq_adam.cu")
THREADS = 256  # 8 warps, one corner row each at a time
MAX_WARPS = 1 << 15
"""Warps of one launch (4,096 blocks): enough to fill a GPU, few enough that each block's shared copy of the codebook
serves several rows."""
CHUNK_ELEMENTS = 1 << 24  # torch: rows are updated in chunks of this many elements (small temporaries)


class VQAdamParams(ctypes.Structure):
    """ctypes twin of `struct VQAdamParams` in vq_adam.cu (the host build checks the layout)."""

    _fields_ = [
        ("grad_table", ctypes.c_void_p),
        ("codebook_t", ctypes.c_void_p),
        ("logits", ctypes.c_void_p),
        ("exp_avg_sq", ctypes.c_void_p),
        ("exp_avg", ctypes.c_void_p),
        ("indices", ctypes.c_void_p),
        ("n_rows", ctypes.c_longlong),
        ("k", ctypes.c_int),
        ("reinmax", ctypes.c_int),
        ("beta1", ctypes.c_float),
        ("beta2", ctypes.c_float),
        ("step_size", ctypes.c_float),
        ("root_correction", ctypes.c_float),
        ("eps", ctypes.c_float),
    ]
    LAYOUT_FIELDS = ("grad_table", "codebook_t", "logits", "exp_avg_sq", "exp_avg", "indices", "n_rows", "k", "reinmax",
                     "beta1",
                     "beta2", "step_size", "root_correction", "eps")


def vq_adam_params(logits: torch.Tensor, codebook_t: torch.Tensor, grad_table: torch.Tensor,
                   exp_avg_sq: torch.Tensor, exp_avg: torch.Tensor | None, estimator: str, beta1: float,
                   beta2: float, step_size: float, root_correction: float, eps: float,
                   indices: torch.Tensor | None = None) -> VQAdamParams:
    """The kernel's parameters. logits, exp_avg_sq, exp_avg: float32 [N, K]; codebook_t: float32 [F, K] (the codebook
    transposed; the caller keeps it alive until the kernel has run);
    grad_table: float32 [N, F]; indices: int32 [N] or None (each stepped row's argmax is written there); all
    contiguous on one device (ValueError otherwise). estimator: "ste" or "reinmax" (engine.grids.ste_gradient)."""
    if estimator not in grids.ESTIMATORS:
        raise ValueError(f"vq_adam: unknown estimator '{estimator}'")
    tensors = [t for t in (logits, codebook_t, grad_table, exp_avg_sq, exp_avg) if t is not None]
    n, k = logits.shape
    shapes_ok = (codebook_t.shape[1] == k and grad_table.shape == (n, codebook_t.shape[0]) and
                 exp_avg_sq.shape == logits.shape and (exp_avg is None or exp_avg.shape == logits.shape))
    if not shapes_ok or any(t.dtype != torch.float32 or not t.is_contiguous() or t.device != logits.device
                            for t in tensors):
        raise ValueError("vq_adam: float32 contiguous tensors of matching shapes on one device expected")
    if indices is not None and (indices.shape != (n,) or indices.dtype != torch.int32 or not indices.is_contiguous()
                                or indices.device != logits.device):
        raise ValueError("vq_adam: indices must be a contiguous int32 [N] tensor on the logits' device")
    return VQAdamParams(grad_table.data_ptr(), codebook_t.data_ptr(), logits.data_ptr(), exp_avg_sq.data_ptr(),
                        0 if exp_avg is None else exp_avg.data_ptr(), 0 if indices is None else indices.data_ptr(),
                        n, k, int(estimator == "reinmax"), beta1,
                        beta2, step_size, root_correction, eps)


def vq_adam_reason(device: torch.device, feature_dim: int = 16) -> str | None:
    """None when the kernel runs on `device`, else why not (VQLogitsAdam then uses vq_adam_torch)."""
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
            root_correction: float, eps: float, indices: torch.Tensor | None = None) -> None:
    """In place, on the logits' CUDA device and current stream (arguments: `vq_adam_params`). Twin: vq_adam_torch."""
    device = cuda_device(logits.device)
    codebook_t = codebook.t().contiguous()  # [F, K]; alive until the launch below is queued (then stream-ordered)
    params = vq_adam_params(logits, codebook_t, grad_table, exp_avg_sq, exp_avg, estimator, beta1, beta2, step_size,
                            root_correction, eps, indices)
    function, = load_functions(device, FeatureWidthOptions(int(codebook.shape[1])), SOURCE_PATH, ("vq_adam",))
    warps = min(params.n_rows, MAX_WARPS)  # one warp per row, striding over the rows beyond MAX_WARPS
    launch_1d(function, device, params, warps * 32, THREADS, "vq_adam")


def vq_adam_torch(logits: torch.Tensor, codebook: torch.Tensor, grad_table: torch.Tensor, exp_avg_sq: torch.Tensor,
                  exp_avg: torch.Tensor | None, estimator: str, beta1: float, beta2: float, step_size: float,
                  root_correction: float, eps: float, indices: torch.Tensor | None = None) -> None:
    """The torch twin of `vq_adam` (same arguments, any device): one step, in place, of the logits [N, K] (and their
    moments) whose corners have a non-zero row in grad_table [N, F]: their straight-through gradient
    (`engine.grids.ste_gradient` with the codebook [K, F]), then `row_adam` on those rows, then (when indices [N]
    is given) those rows' new argmax into indices."""
    rows, grad = grids.ste_gradient(logits, codebook, grad_table, estimator, CHUNK_ELEMENTS)
    row_adam(logits, rows, grad, exp_avg_sq, exp_avg, beta1, beta2, step_size, root_correction, eps)
    if indices is not None:
        chunk = max(1, CHUNK_ELEMENTS // max(1, logits.shape[1]))
        for i in range(0, rows.numel(), chunk):
            r = rows[i:i + chunk]
            indices.index_copy_(0, r, logits.index_select(0, r).argmax(dim=1).to(indices.dtype))


def row_adam(param: torch.Tensor, rows: torch.Tensor | None, grad: torch.Tensor, exp_avg_sq: torch.Tensor,
             exp_avg: torch.Tensor | None, beta1: float, beta2: float, step_size: float, root_correction: float,
             eps: float) -> None:
    """One Adam step, in place, on param[rows] (every row when rows is None) with gradient grad [len(rows), K]:
    v = b2 v + (1 - b2) g^2; m = b1 m + (1 - b1) g (m = g without exp_avg);
    param -= step_size * m / (sqrt(v) / root_correction + eps). In row chunks (small temporaries)."""
    n = grad.shape[0]
    chunk = max(1, CHUNK_ELEMENTS // max(1, grad.shape[1]))
    for i in range(0, n, chunk):
        g = grad[i:i + chunk]
        if rows is None:  # dense: update slices in place
            r = slice(i, i + g.shape[0])
            v = exp_avg_sq[r].mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
            m = g if exp_avg is None else exp_avg[r].mul_(beta1).add_(g, alpha=1.0 - beta1)
            param[r] -= step_size * (m / v.sqrt().div_(root_correction).add_(eps))
            continue
        # row-sparse: gather, update, scatter back (rows are unique; index_copy_, not t[rows] = ..., which sorts)
        r = rows[i:i + chunk]
        v = exp_avg_sq.index_select(0, r).mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        exp_avg_sq.index_copy_(0, r, v)
        if exp_avg is None:
            m = g
        else:
            m = exp_avg.index_select(0, r).mul_(beta1).add_(g, alpha=1.0 - beta1)
            exp_avg.index_copy_(0, r, m)
        update = v.sqrt_().div_(root_correction).add_(eps)
        torch.div(m, update, out=update)
        param.index_add_(0, r, update, alpha=-step_size)
