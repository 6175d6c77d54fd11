"""Training-step speed (GPU): the torch feature lookup vs the fused CUDA one (engine/cuda/features.py), with and
without skipping hidden samples, at a few batch sizes, from the same partly trained state.

    python bench/train_speed.py DATA [--grids dense,vq6] [--warmup-steps 1000] [--steps 150]
        [--json docs/results/train_speed.json]

For each grid: a field is trained for --warmup-steps with the fastest path (so densities have formed, as they have
for most of a real run), then every variant trains --steps more steps from a copy of that state and is timed.
Prints a table and writes it as markdown next to the JSON.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from provenance import git_commit  # noqa: E402

from engine.data import load_dataset  # noqa: E402
from engine.train import DEFAULT_GRID_LR, TrainSettings, Trainer, new_field  # noqa: E402
from train_quality import parse_config  # noqa: E402

VARIANTS = [  # (lookup, skip_hidden, batch)
    ("torch", False, 8192), ("torch", True, 8192), ("fused", False, 8192), ("fused", True, 8192),
    ("fused", True, 16384), ("fused", True, 32768),
]


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(trainer: Trainer, steps: int) -> float:
    trainer.step(10)
    sync()
    t0 = time.perf_counter()
    trainer.step(steps)
    sync()
    return steps / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--grids", default="dense,vq6")
    ap.add_argument("--warmup-steps", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--max-level", type=int, default=7)
    ap.add_argument("--json", default="docs/results/train_speed.json")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu (smoke test only)"
    train = load_dataset(args.data, "train")
    records = []
    for name in args.grids.split(","):
        kind, bits = parse_config(name)
        torch.manual_seed(0)
        field = new_field(train, kind, bits, args.max_level, 2, device=device)
        warm = Trainer(field, train, TrainSettings(steps=10000, batch_rays=8192, grid_lr=DEFAULT_GRID_LR[kind]),
                       device)
        t0 = time.perf_counter()
        warm.step(args.warmup_steps)
        print(f"{name}: warm-up {args.warmup_steps} steps in {time.perf_counter() - t0:.1f} s "
              f"(fused={warm.fused}), PSNR {warm.history[-1]['psnr']:.2f}", flush=True)
        for lookup, skip, batch in VARIANTS:
            settings = dataclasses.replace(warm.settings, batch_rays=batch, skip_hidden=skip)
            trainer = Trainer(copy.deepcopy(warm.field), train, settings, device, step=warm.step_count)
            trainer.fused = trainer.fused and lookup == "fused"
            if lookup == "fused" and not trainer.fused:
                print(f"  {lookup}: unavailable", flush=True)
                continue
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            rate = timed(trainer, args.steps)
            rec = {"grid": kind, "bits": bits, "lookup": lookup, "skip_hidden": skip, "batch_rays": batch,
                   "steps_per_s": rate, "rays_per_s": rate * batch,
                   "peak_mem_gb": torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else 0.0, "device": gpu,
                   "date": datetime.date.today().isoformat(), "commit": git_commit(), "warmup_steps": args.warmup_steps}
            records.append(rec)
            print(f"  {lookup:5s} skip_hidden={skip!s:5s} batch {batch:6d}: {rate:7.1f} steps/s "
                  f"{rate * batch / 1e6:6.2f} M rays/s, peak {rec['peak_mem_gb']:.2f} GB", flush=True)
            del trainer
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=1))
    lines = [f"# Training-step speed on {gpu}", "",
             f"Lego, steps timed from a state trained {args.warmup_steps} steps (bench/train_speed.py).", "",
             "| grid | bits | lookup | skip hidden | rays/step | steps/s | M rays/s | peak GB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['grid']} | {r['bits'] or '-'} | {r['lookup']} | {r['skip_hidden']} | {r['batch_rays']} | "
                     f"{r['steps_per_s']:.1f} | {r['rays_per_s'] / 1e6:.2f} | {r['peak_mem_gb']:.2f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
