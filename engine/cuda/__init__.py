"""The CUDA back end: three kernels compiled at run time by NVRTC through cuda-python, each beside its torch twin.

    toolchain.py      the floor: CUDA probe, contexts, NVRTC compile, disk cache, load_functions, launch_1d
    common.cuh        what the .cu files share: the host shim, octree descent steps, trilinear corner weights
    march_rays.cu     the fused inference ray marcher; host side in marcher.py (GPU field layout, variants,
                      CudaMarcher); public pair march_rays / march_rays_torch in engine/gpu_render.py
    grid_features.cu  training's fused feature lookup; grid_features.py: grid_features / grid_features_torch
    vq_adam.cu        the vq logits' training step; vq_adam.py: vq_adam / vq_adam_torch

Layer: engine. Imports nothing heavy and compiles nothing at import time: the toolchain loads cuda-python lazily,
compiles a kernel variant on its first use and caches it per device and options (in process, and the cubin on disk
under ~/.cache/vbnf/kernels). Without CUDA this package still imports; `cuda_unavailable_reason()` says in one line
why the CUDA path cannot run, and the first launch raises `CudaUnavailable` with that line. engine/field.py does not
import this package: the trainer hands it the fused lookup. See docs/CUDA.md for the design.
"""
from engine.cuda.toolchain import CudaUnavailable, cuda_unavailable_reason

__all__ = ["CudaUnavailable", "cuda_unavailable_reason"]
