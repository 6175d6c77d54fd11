"""The training-time feature lookup, fused (grid_features.cu), and its torch twin: octree descent + trilinear gather
of every LOD's corner features, forward and backward.

    grid_features(points [M,3], octree, corners, tables, base_level, lod) -> float [M,F]
        CUDA, one thread per point (autograd: tables only); far fewer kernel launches than torch and no [M, 8, F]
        intermediates. The trainer passes it to NeuralField.field_fn when it trains on CUDA.
    grid_features_torch(...)  (same arguments and result): `descend` + `engine.field.feature_from_cells`, the lookup
        every torch path uses (there the cells come from the renderer's own descent) and the reference the tests
        compare the kernel with (tests/test_grid_features.py, on the host build and on a GPU).
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from engine.cuda.toolchain import (MAX_LEVELS, FeatureWidthOptions, cuda_device, launch_1d, load_functions,
                                   require_cuda)
from engine.field import feature_from_cells
from engine.octree import Octree, descend

SOURCE_PATH = Path(__file__).with_name("grid_features.cu")
THREADS = 128


class FeatureParams(ctypes.Structure):
    """ctypes twin of `struct FeatureParams` in grid_features.cu (the host build checks the layout)."""

    _fields_ = [
        ("points", ctypes.c_void_p),
        ("child_mask", ctypes.c_void_p * MAX_LEVELS),
        ("child_start", ctypes.c_void_p * MAX_LEVELS),
        ("corners", ctypes.c_void_p * MAX_LEVELS),
        ("tables", ctypes.c_void_p * MAX_LEVELS),
        ("grad_tables", ctypes.c_void_p * MAX_LEVELS),
        ("out", ctypes.c_void_p),
        ("grad_out", ctypes.c_void_p),
        ("n", ctypes.c_longlong),
        ("base_level", ctypes.c_int),
        ("lod", ctypes.c_int),
        ("root_present", ctypes.c_int),
        ("pad_", ctypes.c_int),
    ]
    LAYOUT_FIELDS = ("points", "child_mask", "child_start", "corners", "tables", "grad_tables", "out", "grad_out",
                     "n", "base_level", "lod", "root_present")


def feature_params(points: torch.Tensor, octree: Octree, corners: list[torch.Tensor], base_level: int, lod: int
                   ) -> FeatureParams:
    """The launch parameters for `points` (tables, outputs and gradients are filled in by the caller).

    points: float32 [M,3] contiguous; octree: must hold level base_level + lod (uint8 child masks, int32 child
    starts); corners: per LOD int32 [n_cells, 8] contiguous. The tensors must stay alive until the launch is done.
    """
    level = base_level + lod
    bad = [t.dtype for t in (*octree.child_mask[:level], *octree.child_start[:level], *corners[: lod + 1])
           if t.dtype not in (torch.uint8, torch.int32)]
    if bad or points.dtype != torch.float32:
        raise ValueError(f"grid_features: unexpected dtypes {bad or points.dtype}")
    if level >= MAX_LEVELS or level > octree.max_level:
        raise ValueError(f"grid_features: level {level} is beyond the octree ({octree.max_level}) or the kernel")
    p = FeatureParams()
    p.points = points.data_ptr()
    for l in range(level):
        p.child_mask[l] = octree.child_mask[l].data_ptr()
        p.child_start[l] = octree.child_start[l].data_ptr()
    for k in range(lod + 1):
        p.corners[k] = corners[k].data_ptr()
    p.n = points.shape[0]
    p.base_level, p.lod = base_level, lod
    p.root_present = int(octree.cells[0].numel() > 0)
    return p


KERNELS = ("grid_features_forward", "grid_features_backward")


def _functions(device: torch.device, options: FeatureWidthOptions) -> tuple:
    """(forward, backward) kernels of grid_features.cu for `device`."""
    return load_functions(device, options, SOURCE_PATH, KERNELS)


def _launch(function, params: FeatureParams, device: torch.device) -> None:
    launch_1d(function, device, params, params.n, THREADS, "grid_features")


class _GridFeatures(torch.autograd.Function):
    @staticmethod
    def forward(ctx, points, octree, corners, base_level, lod, *tables):
        device = points.device
        forward, _ = _functions(device, FeatureWidthOptions(tables[0].shape[1]))
        params = feature_params(points, octree, corners, base_level, lod)
        tables = [t.contiguous() for t in tables]
        for k, t in enumerate(tables):
            params.tables[k] = t.data_ptr()
        out = torch.empty(points.shape[0], tables[0].shape[1], device=device, dtype=torch.float32)
        params.out = out.data_ptr()
        _launch(forward, params, device)
        ctx.save_for_backward(points)
        ctx.octree, ctx.corners, ctx.base_level, ctx.lod = octree, corners, base_level, lod
        ctx.table_shapes = [t.shape for t in tables]
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (points,) = ctx.saved_tensors
        device = points.device
        grads = [torch.zeros(shape, device=device, dtype=torch.float32) if ctx.needs_input_grad[5 + k] else None
                 for k, shape in enumerate(ctx.table_shapes)]
        if any(g is not None for g in grads):
            _, backward = _functions(device, FeatureWidthOptions(ctx.table_shapes[0][1]))
            params = feature_params(points, ctx.octree, ctx.corners, ctx.base_level, ctx.lod)
            scratch = [g if g is not None else torch.zeros(shape, device=device)
                       for g, shape in zip(grads, ctx.table_shapes)]
            for k, g in enumerate(scratch):
                params.grad_tables[k] = g.data_ptr()
            grad_out = grad_out.contiguous().float()
            params.grad_out = grad_out.data_ptr()
            _launch(backward, params, device)
        return (None, None, None, None, None, *grads)


def fused_features_reason(device: torch.device | str) -> str | None:
    """None when the fused lookup runs on `device`, else one line saying why not (the trainer then uses torch)."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"the fused feature lookup needs a CUDA device, not {device}"
    try:
        require_cuda()
        _functions(cuda_device(device), FeatureWidthOptions())
    except Exception as e:  # NVRTC missing, driver error: fall back to the torch lookup
        return f"the fused feature lookup is unavailable ({str(e).splitlines()[0]})"
    return None


def grid_features(points: torch.Tensor, octree: Octree, corners: list[torch.Tensor], tables: list[torch.Tensor],
                  base_level: int, lod: int) -> torch.Tensor:
    """Sum over LOD 0..lod of the trilinear interpolation of each LOD's corner features, on CUDA.

    points: float32 [M,3] unit cube (no gradient); octree, corners: as in NeuralField; tables: per LOD float32
    [n_corners, F] (gradients flow to these). Returns float32 [M,F], equal to its twin `grid_features_torch` up to
    float summation order.
    """
    require_cuda()
    cuda_device(points.device)
    if points.requires_grad:
        raise ValueError("grid_features: no gradient with respect to the points (use grid_features_torch)")
    return _GridFeatures.apply(points.contiguous().float(), octree, corners, base_level, lod,
                               *[t.float() for t in tables[: lod + 1]])


def grid_features_torch(points: torch.Tensor, octree: Octree, corners: list[torch.Tensor],
                        tables: list[torch.Tensor], base_level: int, lod: int) -> torch.Tensor:
    """The torch twin of `grid_features` (same arguments and result, any device, gradients to the tables and the
    points): `feature_from_cells` on the cells `descend` finds for the points at level base_level + lod."""
    cells = descend(octree, points, base_level + lod)[0]
    return feature_from_cells(tables, corners, base_level, lod, points, cells)
