"""Where a training step's time goes (GPU): torch.profiler's table of the kernels and host ops over a few steps,
and the sample counts of one step (samples inside the cube, in occupied cells, still visible).

    python bench/train_profile.py DATA [--grids dense,vq6] [--batch 16384] [--steps 20] [--out DIR]

Writes DIR/profile_<grid>.txt (the tables) and prints the sample counts; a diagnostic, not a figure of the results
page.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--grids", default="dense,vq6")
    ap.add_argument("--batch", type=int, default=16384)
    ap.add_argument("--max-level", type=int, default=8)
    ap.add_argument("--warmup-steps", type=int, default=300)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default=".")
    args = ap.parse_args()
    import torch
    from torch.profiler import ProfilerActivity, profile

    from engine.data import load_dataset
    from engine.render import render_rays, max_samples_per_ray
    from train_speed import new_trainer  # bench/ is on sys.path when this file runs as a script

    if not torch.cuda.is_available():
        print("bench/train_profile.py profiles CUDA kernels: it needs a CUDA GPU", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    train = load_dataset(args.data, "train")
    for name in args.grids.split(","):
        trainer = new_trainer(name, train, args.batch, args.max_level, device)
        trainer.step(args.warmup_steps)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        trainer.step(args.steps)
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) / args.steps
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            trainer.step(args.steps)
            torch.cuda.synchronize()
        table_cuda = prof.key_averages().table(sort_by="cuda_time_total", row_limit=40)
        table_cpu = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
        Path(args.out, f"profile_{name}.txt").write_text(f"wall per step {wall * 1e3:.2f} ms\n\n" + table_cuda
                                                        + "\n\n" + table_cpu)
        # one step's sample counts at the finest LOD
        f = trainer.field
        origins, dirs, _, _ = trainer.sample_batch()
        k_max = max_samples_per_ray(f.scene_half_size, trainer.ray_step)
        with torch.no_grad():
            out = render_rays(f.field_fn(f.n_lods - 1), f.octree, f.octree.max_level, f.scene_center,
                              f.scene_half_size, trainer.ray_step, origins, dirs, trainer.background,
                              extras=("samples",), max_samples=k_max)
        print(f"{name}: {wall * 1e3:.2f} ms/step ({1 / wall:.1f} steps/s); K max {k_max}; "
              f"visible samples per ray mean {out['samples'].mean():.1f} max {out['samples'].max():.0f}; "
              f"peak {torch.cuda.max_memory_allocated() / 1e9:.2f} GB", flush=True)
        print(table_cuda[:6000], flush=True)
        del trainer
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
