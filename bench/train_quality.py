"""Training-quality benchmark (GPU): train each grid kind on one scene with the same budget, evaluate every LOD.

    python bench/train_quality.py DATA --configs dense,vq4,vq6,vq8,random4,random6,random8,random12,kmeans4,kmeans6
        --steps 6000 --out-dir runs/bench [--eval-images N] [--json docs/results/train_quality.json]

`kmeansB` needs `dense` in the same run (it quantises that trained dense grid, no training of its own).
Writes one record per (run, LOD) to the JSON (see the fields in `record`), a markdown table next to it
(train_quality.md), and each trained model to OUT_DIR/<config>.vbnf when engine.fileformat is available.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data import load_dataset  # noqa: E402
from engine.evaluate import evaluate  # noqa: E402
from engine.field import InferenceField  # noqa: E402
import engine.grids  # noqa: E402
from engine.grids import kmeans_grid_from_dense  # noqa: E402
from engine.occupancy import initial_octree  # noqa: E402
from engine.train import DEFAULT_GRID_LR, TrainSettings, Trainer, new_field  # noqa: E402
from provenance import git_commit  # noqa: E402


def parse_config(name: str) -> tuple[str, int | tuple[int, ...] | None]:
    """'vq6' -> ('vq', 6); 'vq10.10.10.10.8.6.6' -> ('vq', (10, 10, 10, 10, 8, 6, 6)): one b per level, coarse to
    fine; 'dense' -> ('dense', None)."""
    for kind in ("dense", "vq", "random", "kmeans"):
        if name.startswith(kind):
            rest = name[len(kind):]
            if not rest:
                return kind, None
            bits = tuple(int(b) for b in rest.split("."))
            return kind, bits[0] if len(bits) == 1 else bits
    raise SystemExit(f"unknown config '{name}'")


def grid_bytes(field: InferenceField) -> int:
    """Feature-grid size as stored: b bits per corner (rounded up to bytes per level) + fp16 codebooks,
    or fp16 features for a dense grid."""
    total = 0
    for rows in field.levels:
        if rows.features is not None:
            total += rows.features.numel() * 2
        else:
            total += math.ceil(rows.indices.numel() * rows.bits / 8) + rows.codebook.numel() * 2
    return total


def bits_per_corner(field: InferenceField) -> float:
    """Index bits per corner, averaged over every level's corners (codebooks not counted)."""
    return sum(r.n_corners * r.bits for r in field.levels) / max(1, sum(r.n_corners for r in field.levels))


def save(field: InferenceField, path: Path) -> int | None:
    try:
        from engine.fileformat import save_model
    except ImportError:
        return None
    return save_model(path, field)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--configs", default="dense,vq4,vq6,vq8,random4,random6,random8,random12,kmeans4,kmeans6")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--seconds", type=float, default=None,
                    help="same wall-clock budget for every run instead of --steps: the step count is set from the "
                         "speed of the first 200 steps")
    ap.add_argument("--profile", action="store_true", help="print a torch profile of 10 steps first")
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--max-level", type=int, default=7)
    ap.add_argument("--base-level", type=int, default=2)
    ap.add_argument("--grid-lr", default=",".join(f"{k}={v}" for k, v in DEFAULT_GRID_LR.items()))
    ap.add_argument("--codebook-lr", default="", help="per kind, e.g. vq=0.01 (default: the grid lr)")
    ap.add_argument("--logit-beta1", type=float, default=TrainSettings.logit_beta1,
                    help="vq: VQLogitsAdam's first-moment decay for the logits (0: no momentum)")
    ap.add_argument("--estimator", default=TrainSettings.vq_estimator, choices=list(engine.grids.ESTIMATORS),
                    help="vq: the logits' gradient estimator (TrainSettings.vq_estimator)")
    ap.add_argument("--codebook-std", type=float, default=TrainSettings.codebook_std,
                    help="vq, random: std of the initial codebook entries (TrainSettings.codebook_std)")
    ap.add_argument("--feature-dim", type=int, default=16, help="F of the trained grids (dense, vq, random)")
    ap.add_argument("--lod-bias", type=float, default=TrainSettings.lod_bias,
                    help="P(LOD k) proportional to lod_bias**k")
    ap.add_argument("--soft-fraction", type=float, default=0.0, help="vq: relaxed forward for this run fraction")
    ap.add_argument("--tag", default="", help="appended to each config's name in the records and model files")
    ap.add_argument("--eval-images", type=int, default=None, help="first N test images (default: all)")
    ap.add_argument("--eval-lods", default="all")
    ap.add_argument("--out-dir", default="runs/bench")
    ap.add_argument("--json", default="docs/results/train_quality.json")
    ap.add_argument("--scene", default=None, help="scene name in the records (default: data folder name)")
    args = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    grid_lr = {k: float(v) for k, v in (kv.split("=") for kv in args.grid_lr.split(","))}
    codebook_lr = {k: float(v) for k, v in (kv.split("=") for kv in args.codebook_lr.split(",") if kv)}
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scene = args.scene or Path(args.data).resolve().name
    train = load_dataset(args.data, "train")
    test = load_dataset(args.data, "test", max_images=args.eval_images)
    lods = None if args.eval_lods == "all" else [int(v) for v in args.eval_lods.split(",")]
    records, trained = [], {}
    octree = None  # carved once, shared by every run (carving is not part of a run's training time)
    today = datetime.date.today().isoformat()
    commit = git_commit()
    for name in args.configs.split(","):
        kind, bits = parse_config(name)
        torch.cuda.empty_cache() if device.type == "cuda" else None
        torch.cuda.reset_peak_memory_stats() if device.type == "cuda" else None
        t0 = time.perf_counter()
        if kind == "kmeans":
            if "dense" not in trained:
                raise SystemExit("kmeans configs need 'dense' earlier in --configs")
            dense = trained["dense"]
            field = InferenceField(dense.scene_center, dense.scene_half_size, dense.octree, dense.base_level,
                                   kmeans_grid_from_dense(dense.levels, bits), dense.corners, dense.decoder,
                                   "kmeans", dense.n_lods, {"source": "dense"})
            train_s = time.perf_counter() - t0
            steps = 0
        else:
            torch.manual_seed(0)
            if octree is None:
                t_carve = time.perf_counter()
                octree = initial_octree(train.cameras, train.alphas, train.scene_center, train.scene_half_size,
                                        args.max_level, device)
                print(f"  octree carved in {time.perf_counter() - t_carve:.0f} s", flush=True)
            settings = TrainSettings(steps=args.steps, batch_rays=args.batch, grid_lr=grid_lr[kind],
                                     codebook_lr=codebook_lr.get(kind), soft_fraction=args.soft_fraction,
                                     logit_beta1=args.logit_beta1, lod_bias=args.lod_bias,
                                     vq_estimator=args.estimator, codebook_std=args.codebook_std)
            # no name for the new field: it would hold the unpruned field's memory all run (pruning replaces it)
            trainer = Trainer(new_field(train, kind, bits, args.max_level, args.base_level, args.feature_dim,
                                        device=device, octree=octree, codebook_std=settings.codebook_std),
                              train, settings, device)
            if args.profile:
                profile(trainer)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t1 = time.perf_counter()
            if args.seconds:
                trainer.step(200)
                rate = 200 / (time.perf_counter() - t1)
                settings.steps = max(400, int(rate * args.seconds))
                print(f"  {name}: {rate:.1f} steps/s -> {settings.steps} steps", flush=True)
            while trainer.step_count < settings.steps:
                stats = trainer.step(min(500, settings.steps - trainer.step_count))
                elapsed = time.perf_counter() - t1
                if args.seconds:  # re-estimate the step count from the speed so far (steps speed up as it learns)
                    rate = trainer.step_count / elapsed
                    settings.steps = max(trainer.step_count,
                                         int(trainer.step_count + rate * (args.seconds - elapsed)))
                print(f"  {name} step {trainer.step_count}/{settings.steps} psnr {stats[-1]['psnr']:.2f} "
                      f"{elapsed:.0f}s", flush=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            train_s = time.perf_counter() - t1
            steps = trainer.step_count
            field = trainer.freeze({"scene": scene})
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
        trained[name if kind != "dense" else "dense"] = field
        file_bytes = save(field, out_dir / f"{name}{args.tag}.vbnf")
        kb = grid_bytes(field) / 1000
        t2 = time.perf_counter()
        rows = evaluate(field, test, lods, str(device))
        eval_s = time.perf_counter() - t2
        for r in rows:
            records.append({"scene": scene, "grid": kind, "bits": bits, "lod": r["lod"], "psnr": round(r["psnr"], 3),
                            "ssim": round(r["ssim"], 4), "grid_kb": round(kb, 1),
                            "file_bytes": file_bytes, "train_s": round(train_s, 1), "steps": steps,
                            "config": name + args.tag, "max_level": args.max_level, "batch_rays": args.batch,
                            "grid_lr": grid_lr.get(kind), "codebook_lr": codebook_lr.get(kind),
                            "soft_fraction": args.soft_fraction if kind == "vq" else None,
                            "logit_beta1": args.logit_beta1 if kind == "vq" else None, "lod_bias": args.lod_bias,
                            "feature_dim": field.feature_dim,
                            "bits_per_corner": round(bits_per_corner(field), 3) if kind != "dense" else None,
                            "codebook_std": args.codebook_std if kind in ("vq", "random") else None,
                            "estimator": args.estimator if kind == "vq" else None,
                            "peak_mem_gb": round(peak, 3), "eval_images": r["images"], "renderer": r["renderer"],
                            "device": gpu, "date": today, "commit": commit})
        finest = rows[-1]
        print(f"{name}: {steps} steps {train_s:.0f}s, grid {kb:.1f} KB, finest LOD PSNR {finest['psnr']:.2f} "
              f"SSIM {finest['ssim']:.4f}, peak {peak:.2f} GB, eval {eval_s:.0f}s ({finest['renderer']})",
              flush=True)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(records, indent=1))
    md = Path(args.json).with_suffix(".md")
    md.write_text(markdown(records))
    print(markdown(records))
    return 0


def profile(trainer: Trainer) -> None:
    """Prints a torch profile of 10 steps: wall and GPU-busy time per step, then the top ops by GPU time and by CPU
    time (CPU-side waits, e.g. synchronisations, show in the second table only)."""
    from torch.profiler import ProfilerActivity, profile as torch_profile
    trainer.step(5)
    cuda = torch.cuda.is_available()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    torch.cuda.synchronize() if cuda else None
    t0 = time.perf_counter()
    with torch_profile(activities=acts) as prof:
        trainer.step(10)
        torch.cuda.synchronize() if cuda else None
    wall = (time.perf_counter() - t0) * 100  # ms per step
    averages = prof.key_averages()
    if cuda:
        busy = sum(e.self_device_time_total for e in averages) / 1e4  # us over 10 steps -> ms per step
        print(f"profile: {wall:.1f} ms per step (profiled), GPU busy {busy:.1f} ms per step", flush=True)
        print(averages.table(sort_by="self_cuda_time_total", row_limit=16, max_name_column_width=40), flush=True)
    print(averages.table(sort_by="self_cpu_time_total", row_limit=16, max_name_column_width=40), flush=True)
    trainer.step_count = 0


def markdown(records: list[dict]) -> str:
    runs: dict[str, list[dict]] = {}
    for r in records:
        runs.setdefault(r.get("config", r["grid"]), []).append(r)
    lods = sorted({r["lod"] for r in records})
    head = "| config | grid | bits | grid KB | " + " | ".join(f"LOD {k} PSNR/SSIM" for k in lods) + \
        " | steps | train s | peak GB | device, date |"
    lines = [head, "|" + "---|" * (len(lods) + 8)]
    for name, rows in runs.items():
        by_lod = {r["lod"]: r for r in rows}
        cells = " | ".join(f"{by_lod[k]['psnr']:.2f} / {by_lod[k]['ssim']:.3f}" if k in by_lod else "" for k in lods)
        r0 = rows[0]
        bits = "/".join(map(str, r0["bits"])) if isinstance(r0["bits"], (list, tuple)) else r0["bits"]
        lines.append(f"| {name} | {r0['grid']} | {bits or '-'} | {r0['grid_kb']:.1f} | {cells} | {r0['steps']} | "
                     f"{r0['train_s']:.0f} | {r0['peak_mem_gb']:.2f} | {r0['device']}, {r0['date']} |")
    r0 = records[0]
    lines.append(f"\nScene {r0['scene']}, {r0['eval_images']} test images.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
