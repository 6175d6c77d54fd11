"""Time of one vq_adam launch (the vq logits' step of one level) against the bitwidth, on a CUDA GPU.

    python bench/vq_adam_speed.py [--rows 100000] [--old SOURCE.cu]

Every row is touched (v != 0), K = 2^b logits per row, F = 16. --old times a kernel source of the same parameter
layout whose codebook pointer is the row-major codebook (vq_adam.cu before 2026-12-03, saved beside the current
one, whose headers it reads from its own folder: `git show cca8aa8:engine/cuda/vq_adam.cu >
engine/cuda/vq_adam_old.cu`) next to the current one. Prints a table; the H200's (2026-12-03) is in
docs/research/2026-12-02-rate-distortion.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.cuda import vq_adam as V  # noqa: E402
from engine.cuda.toolchain import FeatureWidthOptions, cuda_device, launch_1d, load_functions  # noqa: E402


def timed(f, repeats: int = 10) -> float:
    """Milliseconds per call of f (after one warm-up call)."""
    f()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        f()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--old", default=None)
    args = ap.parse_args()
    dev = torch.device("cuda")
    device = cuda_device(dev)
    old_fn = load_functions(device, FeatureWidthOptions(16), Path(args.old), ("vq_adam",))[0] if args.old else None
    print("| b | current ms | old ms |\n|---|---|---|")
    for b in (6, 8, 9, 10, 11, 12):
        k, n = 1 << b, args.rows
        logits = torch.randn(n, k, device=dev)
        book = torch.randn(k, 16, device=dev) * 0.1
        grad, sq, idx = torch.randn(n, 16, device=dev), torch.zeros_like(logits), logits.argmax(1).int()
        new = timed(lambda: V.vq_adam(logits, book, grad, sq, None, "ste", 0.0, 0.99, 0.01, 1.0, 1e-15, idx))
        old = None
        if old_fn is not None:
            params = V.VQAdamParams(grad.data_ptr(), book.data_ptr(), logits.data_ptr(), sq.data_ptr(), 0,
                                    idx.data_ptr(), n, k, 0, 0.0, 0.99, 0.01, 1.0, 1e-15)
            old = timed(lambda: launch_1d(old_fn, device, params, min(n, V.MAX_WARPS) * 32, V.THREADS, "vq_adam"))
        print(f"| {b} | {new:.2f} | {'' if old is None else f'{old:.2f}'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
