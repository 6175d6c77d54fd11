"""One full 800x800 frame per mode through the CUDA marcher, for `compute-sanitizer --tool memcheck` (GPU).

    compute-sanitizer --tool memcheck python3 bench/sanitize_frame.py [--kinds vq4,dense] [--size 800]

Renders the synthetic shell field of bench/render.py (6 LODs, base level 2) at full LOD in every mode into a
NaN-poisoned device buffer, checks every pixel was written, and prints one line per frame; exit status 1 if any
pixel was left unwritten. With --interop also one frame into a GL texture through CUDA-GL interop (EGL).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from render import orbit_camera, parse_kinds, shell_field  # noqa: E402

from engine.cuda.marcher import CudaMarcher, MarchTuning  # noqa: E402
from engine.render import RENDER_MODES  # noqa: E402
from engine.render_target import DeviceBufferTarget  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kinds", default="vq4,dense")
    ap.add_argument("--size", type=int, default=800)
    ap.add_argument("--interop", action="store_true")
    ap.add_argument("--rolled", action="store_true", help="MarchTuning(mlp_rolled=True)")
    args = ap.parse_args(argv)
    marcher = CudaMarcher(tuning=MarchTuning(mlp_rolled=args.rolled))
    bad = 0
    for kind, bits in parse_kinds(args.kinds):
        field = shell_field(kind, bits)
        cam = orbit_camera([0.0, 0.0, 0.0], 4.0, 30.0, 30.0, 39.6, args.size, args.size)
        for mode in RENDER_MODES:
            target = DeviceBufferTarget(cam.width, cam.height)
            target.poison_(mode, marcher.device)
            out = target.begin_cuda(mode, marcher.device, marcher.stream())
            marcher.march(field, cam, field.max_lod, mode, (1.0, 1.0, 1.0), out)
            torch.cuda.synchronize()
            image = target.image()
            unwritten = int((~torch.isfinite(image)).sum())
            bad += unwritten
            print(f"{kind}{bits or ''} {mode}: {cam.width}x{cam.height}, unwritten {unwritten}, "
                  f"mean {float(image.float().mean()):.4f}", flush=True)
        if args.interop:
            from engine.gpu_render import RenderChoice, Renderer
            from engine.render_target import GLTextureTarget, egl_context
            ctx, why = egl_context()
            if ctx is None:
                print(f"interop frame skipped: {why}")
                continue
            target = GLTextureTarget(ctx, ctx.texture((cam.width, cam.height), 4, dtype="f1"))
            renderer = Renderer(RenderChoice("cuda+interop", "sanitize"))
            renderer.marcher = marcher
            renderer.render(field, cam, field.max_lod, "rgb", (1.0, 1.0, 1.0), target)
            torch.cuda.synchronize()
            print(f"{kind}{bits or ''} interop frame: active {target.interop_active()} ({target.interop_error})")
            target.release()
            ctx.release()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
