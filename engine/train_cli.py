"""`vbnf train DATA`: train a field and write OUT/model.vbnf, with checkpoints, resume and a NaN guard.

OUT/checkpoint.pt holds the full training state (tensors and plain values, read with weights_only=True: no pickled
code). Ctrl-C saves both files and says how to resume; a NaN loss stops without touching them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from engine.data import load_dataset
from engine.errors import VbnfError
from engine.evaluate import pick_device
from engine.modes import MAX_BITS, MIN_BITS
from engine.recipe import parse_size, recipe_for_budget, train_for_budget
from engine.train import (DEFAULT_GRID_LR, TrainSettings, Trainer, load_checkpoint, new_field,
                          trainer_from_checkpoint)

CHECKPOINT = "checkpoint.pt"
MODEL = "model.vbnf"
CUDA_BATCH = 16384  # rays per step on a GPU: the training benchmark's setting (docs/results/train_speed.md)
DEFAULT_SIZE = 500_000  # bytes: `vbnf train` with no --size, --grid or --bits (a point on docs/RESULTS.md's curve)
CUDA_MAX_LEVEL, CPU_MAX_LEVEL = 8, 6  # 256^3 passes 30 dB on lego in a minute on an H100; the CPU is for small runs


def add_arguments(parser) -> None:
    parser.add_argument("data", help="data set folder (Blender or instant-ngp format) or its transforms JSON")
    parser.add_argument("--out", default=None, help="run folder (default: runs/<data name>_<grid>[_b<bits>])")
    parser.add_argument("--size", type=parse_size_arg, default=None,
                        help="byte budget of the model file (e.g. 500KB, 2MB): trains with the project's "
                             "rate-distortion recipe (docs/ENGINE.md) and writes a file within it; the default when "
                             f"neither --grid nor --bits is given ({DEFAULT_SIZE // 1000} KB)")
    parser.add_argument("--grid", default=None, choices=["dense", "vq", "random"],
                        help="train one grid kind the classic way (vq: straight-through logits from the first "
                             "step) instead of the --size recipe")
    parser.add_argument("--bits", type=parse_bits, default=None,
                        help=f"codebook bitwidth b for vq/random ({MIN_BITS}..{MAX_BITS}), or one per level, coarse "
                             "to fine (e.g. 10,10,10,10,8,6,6 for 7 LODs)")
    parser.add_argument("--max-level", type=int, default=None,
                        help=f"finest octree level (default {CUDA_MAX_LEVEL}: 256^3 cells on CUDA, "
                             f"{CPU_MAX_LEVEL}: 64^3 on the CPU)")
    parser.add_argument("--base-level", type=int, default=2, help="octree level of LOD 0")
    parser.add_argument("--feature-dim", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None,
                        help=f"optimiser steps (default {TrainSettings.steps}; with --size, the recipe's)")
    parser.add_argument("--batch", type=int, default=None,
                        help=f"rays per step (default {CUDA_BATCH} on CUDA, {TrainSettings.batch_rays} on CPU)")
    parser.add_argument("--lr", type=float, default=TrainSettings.lr, help="decoder learning rate")
    parser.add_argument("--grid-lr", type=float, default=None,
                        help="feature/logit learning rate (default per grid: " +
                             ", ".join(f"{k} {v}" for k, v in DEFAULT_GRID_LR.items()) + ")")
    parser.add_argument("--codebook-lr", type=float, default=None, help="codebook learning rate (default: grid lr)")
    parser.add_argument("--optimizer", default="adam", choices=["adam", "rmsprop"])
    parser.add_argument("--checkpoint-every", type=int, default=1000, help="steps between checkpoints")
    parser.add_argument("--downscale", type=int, default=1, help="shrink training images by this factor")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_size_arg(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_bits(text: str) -> int | tuple[int, ...]:
    """'6' -> 6; '10,10,8,6' -> (10, 10, 8, 6) (checked against the levels where the field is made)."""
    try:
        bits = tuple(int(b) for b in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a bitwidth or a comma-separated list of them: '{text}'") from None
    return bits[0] if len(bits) == 1 else bits


def default_out(args) -> Path:
    name = Path(args.data).resolve()
    name = name.parent.name if name.is_file() else name.name
    if args.grid is None:
        return Path("runs") / f"{name}_{args.size // 1000}KB"
    bits = "-".join(map(str, args.bits)) if isinstance(args.bits, tuple) else args.bits
    suffix = f"_b{bits}" if args.grid != "dense" else ""
    return Path("runs") / f"{name}_{args.grid}{suffix}"


def save_checkpoint(trainer: Trainer, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(trainer.checkpoint(), tmp)
    os.replace(tmp, path)


def save_run_model(trainer: Trainer, path: Path, extra: dict | None = None) -> int:
    from engine.fileformat import save_model
    recent = trainer.history[-200:]
    metrics = {"train_psnr_recent": round(statistics.mean(r["psnr"] for r in recent), 3)} if recent else {}
    return save_model(path, trainer.freeze({"metrics": metrics, **(extra or {})}))


def run(args) -> int:
    if args.grid is None:
        if args.bits is not None:
            raise VbnfError("--bits needs --grid vq or random (with --size the recipe chooses the bits)")
        args.size = args.size or DEFAULT_SIZE
        return run_recipe(args)
    if args.size is not None:
        raise VbnfError("--size chooses the grid itself: drop --grid (or drop --size to train one grid kind)")
    if args.bits is None:
        args.bits = 6
    if args.steps is None:
        args.steps = TrainSettings.steps
    out = Path(args.out) if args.out else default_out(args)
    ckpt_path, model_path = out / CHECKPOINT, out / MODEL
    device = pick_device(args.device)
    dataset = load_dataset(args.data, "train", downscale=args.downscale)
    batch = args.batch or (CUDA_BATCH if device.type == "cuda" else TrainSettings.batch_rays)
    grid_lr = args.grid_lr if args.grid_lr is not None else DEFAULT_GRID_LR[args.grid]
    settings = TrainSettings(steps=args.steps, batch_rays=batch, lr=args.lr, grid_lr=grid_lr,
                             codebook_lr=args.codebook_lr, optimizer=args.optimizer, seed=args.seed)
    if ckpt_path.exists() and not args.resume:
        raise VbnfError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if args.resume:
        if not ckpt_path.exists():
            raise VbnfError(f"{ckpt_path} does not exist: nothing to resume; drop --resume to start a new run")
        trainer = trainer_from_checkpoint(load_checkpoint(ckpt_path), dataset, device, settings)
        print(f"resuming {out} at step {trainer.step_count}")
    else:
        out.mkdir(parents=True, exist_ok=True)
        max_level = args.max_level or (CUDA_MAX_LEVEL if device.type == "cuda" else CPU_MAX_LEVEL)
        # passed straight in: a name kept here would hold the unpruned field (and its GPU memory) all run long
        trainer = Trainer(new_field(dataset, args.grid, args.bits if args.grid != "dense" else None, max_level,
                                    args.base_level, args.feature_dim, args.seed, device), dataset, settings, device)
    print(f"training {trainer.field.kind}{'' if trainer.field.kind == 'dense' else f' b={trainer.field.grid.bits}'}"
          f" on {dataset.root} ({dataset.images.shape[0]} images) on {device}: "
          f"{trainer.field.n_lods} LODs, {trainer.field.octree.cells[-1].numel():,} finest cells")
    bar = None
    if not args.quiet:
        from tqdm import tqdm
        bar = tqdm(total=settings.steps, initial=trainer.step_count, unit="step", dynamic_ncols=True,
                   file=sys.stdout)
    t0 = time.perf_counter()
    try:
        while trainer.step_count < settings.steps:
            n = min(50, settings.steps - trainer.step_count)
            stats = trainer.step(n)
            if bar is not None:
                bar.update(n)
                bar.set_postfix(loss=f"{stats[-1]['loss']:.5f}",
                                psnr=f"{statistics.mean(s['psnr'] for s in stats):.2f}")
            if trainer.step_count % args.checkpoint_every < n:
                save_checkpoint(trainer, ckpt_path)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        save_checkpoint(trainer, ckpt_path)
        save_run_model(trainer, model_path)
        print(f"interrupted at step {trainer.step_count}: saved {ckpt_path} and {model_path}; "
              f"continue with: vbnf train {args.data} --out {out} --resume")
        return 130
    if bar is not None:
        bar.close()
    save_checkpoint(trainer, ckpt_path)
    size = save_run_model(trainer, model_path)
    print(f"done: {trainer.step_count} steps in {time.perf_counter() - t0:.1f} s; wrote {model_path} "
          f"({size:,} bytes) and {ckpt_path}")
    return 0


def run_recipe(args) -> int:
    """`vbnf train --size`: the rate-distortion recipe (engine/recipe.py) for one byte budget."""
    out = Path(args.out) if args.out else default_out(args)
    model_path = out / MODEL
    if args.resume:
        raise VbnfError("--resume continues a run of one grid kind (--grid); a --size run starts anew")
    if model_path.exists():
        raise VbnfError(f"{model_path} exists; choose another --out or remove it")
    device = pick_device(args.device)
    dataset = load_dataset(args.data, "train", downscale=args.downscale)
    batch = args.batch or (CUDA_BATCH if device.type == "cuda" else TrainSettings.batch_rays)
    recipe = recipe_for_budget(args.size, device.type, args.steps)
    if args.max_level:
        recipe.max_level = args.max_level
    recipe.base_level, recipe.feature_dim = args.base_level, args.feature_dim
    settings = TrainSettings(steps=recipe.steps, batch_rays=batch, lr=args.lr,
                             grid_lr=args.grid_lr if args.grid_lr is not None else DEFAULT_GRID_LR["dense"],
                             codebook_lr=args.codebook_lr, optimizer=args.optimizer, seed=args.seed)
    out.mkdir(parents=True, exist_ok=True)
    print(f"training for {args.size:,} bytes on {dataset.root} ({dataset.images.shape[0]} images) on {device}: "
          f"{recipe.steps} steps, dense phase then importance-weighted k-means and fine-tuning, "
          f"{recipe.max_level - recipe.base_level + 1} LODs")
    bar = None
    if not args.quiet:
        from tqdm import tqdm
        bar = tqdm(total=recipe.steps, unit="step", dynamic_ncols=True, file=sys.stdout)
    done = {"dense": 0, "fine-tune": 0}

    def progress(phase: str, trainer: Trainer) -> None:
        if bar is not None:
            bar.update(trainer.step_count - done[phase])
            recent = trainer.history[-50:]
            bar.set_postfix(phase=phase, psnr=f"{statistics.mean(s['psnr'] for s in recent):.2f}")
        done[phase] = trainer.step_count

    t0 = time.perf_counter()
    try:
        tuner, recipe = train_for_budget(dataset, recipe, settings, device, progress)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print(f"interrupted after {sum(done.values())} steps: a --size model exists only once its run ends; "
              "nothing was written")
        return 130
    if bar is not None:
        bar.close()
    size = save_run_model(tuner, model_path, {"recipe": asdict(recipe)})
    print(f"done: {recipe.steps} steps in {time.perf_counter() - t0:.1f} s (bits per level "
          f"{'/'.join(map(str, recipe.level_bits))}); wrote {model_path} ({size:,} bytes, budget {args.size:,})")
    return 0
