"""Where training's GPU memory goes: persistent tensors (parameters, optimiser moments) and the peaks of training
steps before pruning, at a prune and after it, per grid configuration.

    python bench/train_memory.py DATA [--configs dense,vq6,vq8] [--max-level 8] [--batch 16384]
        [--logit-beta1 0.9,0] [--json docs/results/train_memory.json]

Each configuration trains 60 steps with pruning moved to steps 12 and 30 (the benchmark prunes at 20% and 50% of its
run), so every phase is seen in a few seconds. The benchmark's peak (bench/train_quality.py's peak_mem_gb) is the
largest of these phases. Prints a table and writes it as markdown next to the JSON.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data import load_dataset  # noqa: E402
from engine.occupancy import initial_octree  # noqa: E402
from engine.train import DEFAULT_GRID_LR, TrainSettings, Trainer, new_field  # noqa: E402
from provenance import git_commit  # noqa: E402
from train_quality import parse_config  # noqa: E402

GB = 2.0 ** 30


def tensor_gb(tensors) -> float:
    return sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t)) / GB


def persistent(trainer: Trainer) -> dict:
    """GB held between steps: parameters, and optimiser moments split into the vq logits' and the rest."""
    grid = trainer.field.grid
    logits = {id(p) for p in grid.logits}
    moments_logits = moments_other = 0.0
    for opt in trainer.optimizers:
        for p, state in opt.state.items():
            gb = tensor_gb(state.values())
            if id(p) in logits:
                moments_logits += gb
            else:
                moments_other += gb
    return {"params_gb": tensor_gb(trainer.field.parameters()), "logits_gb": tensor_gb(grid.logits),
            "moments_logits_gb": moments_logits, "moments_other_gb": moments_other,
            "finest_cells": int(trainer.field.octree.cells[-1].numel())}


def phase_peak(trainer: Trainer, steps: int) -> tuple[float, float]:
    """(peak GB over `steps` training steps, steps per second)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    trainer.step(steps)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / GB, steps / (time.perf_counter() - t0)


def peak_breakdown(trainer: Trainer, steps: int, top: int = 14) -> list[str]:
    """Lines naming what is allocated at the highest point of `steps` training steps: the tensors held before them,
    then the blocks allocated during them and still alive at the peak, grouped by the innermost frame in this
    repository that allocated them (torch's allocator history with Python stacks)."""
    import collections
    torch.cuda.synchronize()
    held = torch.cuda.memory_allocated()
    torch.cuda.memory._record_memory_history(max_entries=400000, stacks="python")
    trainer.step(steps)
    torch.cuda.synchronize()
    trace = torch.cuda.memory._snapshot()["device_traces"][0]
    torch.cuda.memory._record_memory_history(enabled=None)
    live, cur, peak, peak_at = {}, 0, 0, -1
    for i, e in enumerate(trace):
        if e["action"] == "alloc":
            live[e["addr"]] = e["size"]
            cur += e["size"]
            if cur > peak:
                peak, peak_at = cur, i
        elif e["action"] == "free_requested" and e["addr"] in live:
            cur -= live.pop(e["addr"])
    live = {}
    for e in trace[: peak_at + 1]:
        if e["action"] == "alloc":
            live[e["addr"]] = e
        elif e["action"] == "free_requested":
            live.pop(e["addr"], None)
    groups = collections.Counter()
    for e in live.values():
        ours = [f for f in e.get("frames", []) if "/engine/" in f["filename"] or "/bench/" in f["filename"]]
        where = f"{Path(ours[0]['filename']).name}:{ours[0]['line']} {ours[0]['name']}" if ours else "?"
        groups[where] += e["size"]
    lines = [f"held before the steps {held / GB:.2f} GB; peak during them {(held + peak) / GB:.2f} GB, of which:"]
    lines += [f"  {size / GB:7.3f} GB  {where}" for where, size in groups.most_common(top)]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--configs", default="dense,vq6,vq8")
    ap.add_argument("--max-level", type=int, default=8)
    ap.add_argument("--base-level", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16384)
    ap.add_argument("--logit-beta1", default="0.9", help="comma-separated values to measure for vq configs")
    ap.add_argument("--json", default="docs/results/train_memory.json")
    ap.add_argument("--breakdown", action="store_true",
                    help="also print what is allocated at the peak of 10 more steps, per allocating line")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/train_memory.py measures GPU memory: it needs CUDA")
    device = torch.device("cuda")
    train = load_dataset(args.data, "train")
    octree = initial_octree(train.cameras, train.alphas, train.scene_center, train.scene_half_size, args.max_level,
                            device)
    records = []
    for name in args.configs.split(","):
        kind, bits = parse_config(name)
        for beta1 in ([float(v) for v in args.logit_beta1.split(",")] if kind == "vq" else [None]):
            torch.manual_seed(0)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            settings = TrainSettings(steps=60, batch_rays=args.batch, grid_lr=DEFAULT_GRID_LR[kind],
                                     prune_at=(0.2, 0.5), logit_beta1=0.9 if beta1 is None else beta1)
            trainer = Trainer(new_field(train, kind, bits, args.max_level, args.base_level, device=device,
                                        octree=octree), train, settings, device)  # no other name holds the field
            setup_peak = torch.cuda.max_memory_allocated() / GB
            rec = {"config": name, "grid": kind, "bits": bits, "logit_beta1": beta1, "batch_rays": args.batch,
                   "max_level": args.max_level, "setup_peak_gb": round(setup_peak, 3)}
            trainer.step(2)  # optimiser moments exist from the first step on
            before = persistent(trainer)
            rec["steps_peak_gb"], rec["steps_per_s"] = phase_peak(trainer, 10)  # steps 3..12
            rec["prune_peak_gb"], _ = phase_peak(trainer, 1)                   # step 13 prunes first
            rec["after_prune_peak_gb"], rec["steps_per_s_after"] = phase_peak(trainer, 10)
            after = persistent(trainer)
            rec.update({f"{k}_before_prune": round(v, 3) for k, v in before.items()})
            rec.update({f"{k}_after_prune": round(v, 3) for k, v in after.items()})
            rec["peak_gb"] = max(rec["setup_peak_gb"], rec["steps_peak_gb"], rec["prune_peak_gb"],
                                 rec["after_prune_peak_gb"])
            rec.update({"device": torch.cuda.get_device_name(0), "date": datetime.date.today().isoformat(),
                        "commit": git_commit()})
            rec = {k: round(v, 3) if isinstance(v, float) else v for k, v in rec.items()}
            if args.breakdown:
                rec["breakdown"] = peak_breakdown(trainer, 10)
                print("\n".join(rec["breakdown"]), flush=True)
            records.append(rec)
            print(json.dumps(rec), flush=True)
            del trainer
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(records, indent=1))
    md = markdown(records)
    Path(args.json).with_suffix(".md").write_text(md)
    print(md)
    return 0


def markdown(records: list[dict]) -> str:
    lines = ["| config | logit beta1 | finest cells | logits GB | logit moments GB | other params+moments GB | "
             "peak: steps | at prune | after prune | steps/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(
            f"| {r['config']} | {'-' if r['logit_beta1'] is None else r['logit_beta1']} | "
            f"{r['finest_cells_before_prune']} -> {r['finest_cells_after_prune']} | "
            f"{r['logits_gb_before_prune']:.2f} | {r['moments_logits_gb_before_prune']:.2f} | "
            f"{r['params_gb_before_prune'] - r['logits_gb_before_prune'] + r['moments_other_gb_before_prune']:.2f} | "
            f"{r['steps_peak_gb']:.2f} | {r['prune_peak_gb']:.2f} | {r['after_prune_peak_gb']:.2f} | "
            f"{r['steps_per_s']:.0f} |")
    r0 = records[0]
    lines.append(f"\nBatch {r0['batch_rays']} rays, octree levels {r0['max_level']}, before-prune sizes; "
                 f"device {r0['device']}, {r0['date']}. Written by bench/train_memory.py.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
