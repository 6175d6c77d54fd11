"""The CUDA back end: the fused ray marcher (march_rays.cu), compiled at run time by NVRTC through cuda-python.

Layer: engine. Imports nothing heavy and compiles nothing at import time: `engine.cuda.marcher` loads cuda-python
lazily, compiles a kernel variant on its first use and caches it per device and options (in process, and the cubin
on disk under ~/.cache/vbnf/kernels). Without CUDA this package still imports; `cuda_unavailable_reason()` says in one
line why the CUDA path cannot run, and the first launch raises `CudaUnavailable` with that line.
See docs/CUDA.md for the design.
"""
from engine.cuda.marcher import CudaUnavailable, cuda_unavailable_reason

__all__ = ["CudaUnavailable", "cuda_unavailable_reason"]
