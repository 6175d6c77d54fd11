"""`vbnf train DATA`: train a field and write OUT/model.vbnf, with checkpoints, resume and a NaN guard.

OUT/checkpoint.pt holds the full training state (tensors and plain values, read with weights_only=True: no pickled
code). Ctrl-C saves both files and says how to resume; a NaN loss stops without touching them.
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from engine.cli_checks import (MAX_BATCH, MAX_FEATURE_DIM, MAX_OCTREE_LEVEL, MAX_STEPS, float_in, int_in,
                               positive_float, positive_int, seed_int)
from engine.data import load_dataset
from engine.errors import VbnfError
from engine.evaluate import pick_device
from engine.modes import MAX_BITS, MIN_BITS
from engine.recipe import RecipeInterrupted, check_budget, parse_size, recipe_for_budget, train_for_budget
from engine.train import (DEFAULT_GRID_LR, MAX_LOD_BIAS, TrainSettings, Trainer, load_checkpoint, new_field,
                          stored_number, trainer_from_checkpoint)

CHECKPOINT = "checkpoint.pt"
MODEL = "model.vbnf"
CUDA_BATCH = 16384  # rays per step on a GPU: the training benchmark's setting (docs/results/train_speed.md)


def default_batch(device: torch.device | str) -> int:
    """Rays per step of `vbnf train` on `device` when --batch is not given: CUDA_BATCH on a GPU, else
    TrainSettings.batch_rays (the viewer's live training, `vbnf convert --finetune` and the benches use it too)."""
    return CUDA_BATCH if torch.device(device).type == "cuda" else TrainSettings.batch_rays
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
                             "step) instead of the --size recipe; --bits alone means vq")
    parser.add_argument("--bits", type=parse_bits, default=None,
                        help=f"codebook bitwidth b for vq/random ({MIN_BITS}..{MAX_BITS}, default 6), or one per "
                             "level, coarse to fine (e.g. 10,10,10,10,8,6,6 for 7 LODs)")
    parser.add_argument("--max-level", type=int_in(1, MAX_OCTREE_LEVEL, "an octree level"), default=None,
                        help=f"finest octree level (default {CUDA_MAX_LEVEL}: 256^3 cells on CUDA, "
                             f"{CPU_MAX_LEVEL}: 64^3 on the CPU)")
    parser.add_argument("--base-level", type=int_in(1, MAX_OCTREE_LEVEL, "an octree level"), default=None,
                        help="octree level of LOD 0 (default 2)")
    parser.add_argument("--feature-dim", type=int_in(1, MAX_FEATURE_DIM, "a feature width"), default=None,
                        help="features per corner (default 16)")
    parser.add_argument("--steps", type=int_in(1, MAX_STEPS, "a step count"), default=None,
                        help=f"optimiser steps (default {TrainSettings.steps}; with --size, the recipe's)")
    parser.add_argument("--batch", type=int_in(1, MAX_BATCH, "a ray count"), default=None,
                        help=f"rays per step (default {CUDA_BATCH} on CUDA, {TrainSettings.batch_rays} on CPU)")
    parser.add_argument("--lr", type=positive_float, default=TrainSettings.lr, help="decoder learning rate")
    parser.add_argument("--grid-lr", type=positive_float, default=None,
                        help="feature/logit learning rate (default per grid: " +
                             ", ".join(f"{k} {v}" for k, v in DEFAULT_GRID_LR.items()) + ")")
    parser.add_argument("--codebook-lr", type=positive_float, default=None, help="codebook learning rate (default: grid lr)")
    parser.add_argument("--optimizer", default="adam", choices=["adam", "rmsprop"])
    parser.add_argument("--lod-bias", type=float_in(0.0, MAX_LOD_BIAS, "a LOD weight", open_lo=True), default=None,
                        help=f"how the steps divide between the LODs: P(LOD k) proportional to LOD_BIAS^k (default "
                             f"{TrainSettings.lod_bias:g}: about half the steps at the finest LOD; --size runs use their "
                             "recipe's 4). Larger: a better whole model, worse coarse prefixes (docs/ENGINE.md)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=1000, help="steps between checkpoints")
    parser.add_argument("--downscale", type=int_in(1, 64, "an integer factor"), default=1, help="shrink training images by this factor")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument("--seed", type=seed_int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--random-background", action="store_true",
                        help="train each ray on a random background colour (data sets with alpha masks): the model "
                             "keeps empty space transparent, so it renders on any background")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def warn_unmasked_random_background(args, dataset) -> None:
    """One line on stderr when --random-background meets a data set without alpha masks (it then has no effect)."""
    if args.random_background and dataset.alphas is None:
        print(f"vbnf train: warning: --random-background needs alpha masks, which {args.data} has not; training on "
              "its own background", file=sys.stderr)


def lod_bias_of(args, ckpt: dict | None) -> float:
    """--lod-bias; else, resuming, the checkpoint's (when it is a valid one); else the trainer's default."""
    if args.lod_bias:
        return args.lod_bias
    stored = ckpt["settings"] if ckpt is not None else {}
    return float(stored_number(stored, "lod_bias", TrainSettings.lod_bias, 0.0, MAX_LOD_BIAS))


def parse_size_arg(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_bits(text: str) -> int | tuple[int, ...]:
    """'6' -> 6; '10,10,8,6' -> (10, 10, 8, 6) (the count is checked against the levels where the field is made)."""
    try:
        bits = tuple(int(b) for b in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a bitwidth or a comma-separated list of them: '{text}'") from None
    bad = [b for b in bits if not MIN_BITS <= b <= MAX_BITS]
    if bad:
        raise argparse.ArgumentTypeError(f"--bits must be between {MIN_BITS} and {MAX_BITS}, got {bad[0]}")
    return bits[0] if len(bits) == 1 else bits


# Options that shape the field; given explicitly with --resume they must agree with the checkpoint.
FIELD_OPTIONS = {"grid": "vq", "bits": 6, "max_level": None, "base_level": 2, "feature_dim": 16}


def resolve_field_options(args) -> set[str]:
    """Fills the defaults of FIELD_OPTIONS into `args`; returns the names the command line gave explicitly."""
    explicit = {k for k in FIELD_OPTIONS if getattr(args, k) is not None}
    for k, v in FIELD_OPTIONS.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return explicit


def default_out(args) -> Path:
    name = Path(args.data).resolve()
    name = name.parent.name if name.is_file() else name.name
    if args.grid is None:
        return Path("runs") / f"{name}_{args.size // 1000}KB"
    bits = "-".join(map(str, args.bits)) if isinstance(args.bits, tuple) else args.bits
    suffix = f"_b{bits}" if args.grid != "dense" else ""
    return Path("runs") / f"{name}_{args.grid}{suffix}"


def save_checkpoint(trainer: Trainer, path: Path, dataset_info: dict | None = None) -> None:
    """The trainer's state (and the data set's fingerprint) to `path`, atomically and fsync'd (engine/atomic.py)."""
    from engine.atomic import write_atomic_with
    ckpt = trainer.checkpoint()
    if dataset_info is not None:
        ckpt["dataset"] = dataset_info
    write_atomic_with(path, lambda f: torch.save(ckpt, f))


def dataset_fingerprint(data: str, dataset, downscale: int) -> dict:
    """What identifies the training data: the transforms JSON's resolved path and a hash of its bytes, the image
    count and size (after --downscale)."""
    from engine.data import find_transforms
    json_path = find_transforms(Path(data), "train")[0].resolve()
    try:
        digest = hashlib.sha256(json_path.read_bytes()).hexdigest()[:16]
    except OSError:
        digest = ""
    n, h, w = (int(v) for v in dataset.images.shape[:3])
    return {"path": str(json_path), "transforms_sha256": digest, "images": n, "width": w, "height": h,
            "downscale": int(downscale)}


def check_resume(ckpt: dict, fingerprint: dict, args, explicit: set[str], ckpt_path: Path) -> str:
    """Raises VbnfError naming what differs between the checkpoint and this command line (data set or an explicit
    field option); returns a note for a checkpoint without a fingerprint ('' otherwise)."""
    saved = ckpt.get("dataset")
    note = ""
    if saved is None:
        note = f"{ckpt_path} records no data set fingerprint (an older checkpoint): the data set cannot be checked"
    else:
        names = {"transforms_sha256": "transforms JSON content", "images": "image count", "width": "image width",
                 "height": "image height", "downscale": "--downscale"}
        diffs = [f"{label} {saved.get(k)!r} -> {fingerprint[k]!r}" for k, label in names.items()
                 if k in saved and saved.get(k) != fingerprint[k]]
        if diffs:
            raise VbnfError(f"--resume: {ckpt_path} was trained on another data set ({saved.get('path')}): "
                            f"{'; '.join(diffs)}; resume with that data set or start a new run with another --out")
        if saved.get("path") != fingerprint["path"]:
            note = f"the data set moved: {saved.get('path')} -> {fingerprint['path']} (same content)"
    stored_bits = tuple(ckpt["bits"]) if isinstance(ckpt["bits"], list) else ckpt["bits"]
    if isinstance(stored_bits, tuple) and len(set(stored_bits)) == 1:
        stored_bits = stored_bits[0]
    stored = {"grid": ckpt["kind"], "bits": stored_bits, "max_level": len(ckpt["cells"]) - 1,
              "base_level": ckpt["base_level"], "feature_dim": ckpt["feature_dim"]}
    diffs = []
    for k in sorted(explicit):
        given = getattr(args, k)
        if k == "bits" and (stored["grid"] == "dense"):
            diffs.append(f"--bits {given} (the checkpoint is a dense grid)")
        elif given != stored[k]:
            shown = ",".join(map(str, stored[k])) if isinstance(stored[k], tuple) else stored[k]
            diffs.append(f"--{k.replace('_', '-')} {_show(given)} (checkpoint: {shown})")
    if diffs:
        raise VbnfError(f"--resume: the command line contradicts {ckpt_path}: {'; '.join(diffs)}; drop those "
                        "options to resume, or start a new run with another --out")
    return note


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def bytes_per_corner(kind: str, bits, feature_dim: int) -> int:
    """Training memory per grid corner, bytes: its parameters, gradient and two Adam moments, plus the gathered
    feature table and its gradient (vq: 2^b logits each, and a softmax copy and its gradient in the warm-up)."""
    per_level = bits if isinstance(bits, tuple) else (bits,)
    table = 8 * feature_dim
    if kind == "dense":
        return 16 * feature_dim + table
    if kind == "vq":
        return 24 * (1 << max(per_level)) + table
    return 8 + table


def available_memory(device: torch.device) -> int | None:
    """Bytes the device can still give (CUDA: free memory; CPU: MemAvailable), or None when unknown."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, RuntimeError):
        return None
    return None


ACTIVATION_BYTES_PER_RAY_CELL = 1024
"""Peak activation bytes per ray in a batch and per finest-level cell along an axis (2^max_level): about 4.4 GB
at batch 16384 and level 8 (dense lego on an H100, docs/results/train_memory.md)."""


def training_bytes(corners: int, args, batch: int) -> int:
    """Estimated peak training memory, bytes: the grid (bytes_per_corner) plus the batch's activations."""
    return (corners * bytes_per_corner(args.grid, args.bits, args.feature_dim)
            + batch * (1 << args.max_level) * ACTIVATION_BYTES_PER_RAY_CELL)


def check_fits(what: str, corners: int, args, device: torch.device, available: int | None, batch: int) -> None:
    """VbnfError with the estimate when training `corners` grid corners with `batch` rays per step would not fit in
    `available` bytes."""
    need = training_bytes(corners, args, batch)
    if available is not None and need > available:
        per = bytes_per_corner(args.grid, args.bits, args.feature_dim)
        raise VbnfError(f"--max-level {args.max_level}: training needs about {need / 2**30:.1f} GiB by the {what} "
                        f"({corners:,} corners x {per} B for the {args.grid} grid + {batch} rays x "
                        f"{(1 << args.max_level) * ACTIVATION_BYTES_PER_RAY_CELL // 1024} KiB of activations), more "
                        f"than the {available / 2**30:.1f} GiB free on {device}; lower --max-level or --batch"
                        + (" or --bits" if args.grid == "vq" else ""))


def surface_corner_estimate(n_probe: int, probe_level: int, base_level: int, max_level: int) -> int:
    """A lower bound on the corners of levels base_level..max_level: the n_probe occupied cells of probe_level taken
    as a surface (x4 cells per finer level, one corner per cell)."""
    return sum(n_probe * 4 ** max(0, lv - probe_level) for lv in range(base_level, max_level + 1))


def carved_octree_that_fits(dataset, args, device: torch.device, batch: int):
    """The training octree (carved from the alpha masks), refused before it is built when even a lower bound on its
    corners (the occupied cells of level 5 as a surface, scaled by 4 per level) would not fit, and after, with the
    exact corner count."""
    from engine.occupancy import initial_octree
    from engine.octree import cell_corners
    available = available_memory(device)
    probe_level = min(5, args.max_level)
    probe = initial_octree(dataset.cameras, dataset.alphas, dataset.scene_center, dataset.scene_half_size,
                           probe_level, device)
    lower = surface_corner_estimate(int(probe.cells[-1].numel()), probe_level, args.base_level, args.max_level)
    check_fits("surface estimate of the carved octree", lower, args, device, available, batch)
    octree = probe if probe_level == args.max_level else initial_octree(
        dataset.cameras, dataset.alphas, dataset.scene_center, dataset.scene_half_size, args.max_level, device)
    if octree.max_level >= args.base_level:
        corners = sum(int(cell_corners(octree, lv)[0].numel()) for lv in range(args.base_level, octree.max_level + 1))
        check_fits("carved octree", corners, args, device, available, batch)
    return octree


def save_run_model(trainer: Trainer, path: Path, extra: dict | None = None) -> int:
    from engine.fileformat import save_model
    recent = trainer.history[-200:]
    metrics = {"train_psnr_recent": round(statistics.mean(r["psnr"] for r in recent), 3)} if recent else {}
    return save_model(path, trainer.freeze({"metrics": metrics, **(extra or {})}))


def run(args) -> int:
    if args.grid is None and args.bits is not None and args.size is None and not args.resume:
        args.grid = "vq"  # --bits alone: a vq grid of those bits, as before --size existed
    if args.grid is None and not args.resume:
        if args.bits is not None:
            raise VbnfError("--bits and --size both choose the bits: give one of them")
        args.size = args.size or DEFAULT_SIZE
        return run_recipe(args)
    if args.size is not None:
        raise VbnfError("--size chooses the grid itself: drop --grid (or drop --size to train one grid kind)")
    args.steps = args.steps or TrainSettings.steps
    explicit = resolve_field_options(args)
    out = Path(args.out) if args.out else default_out(args)
    ckpt_path, model_path = out / CHECKPOINT, out / MODEL
    device = pick_device(args.device)
    if ckpt_path.exists() and not args.resume:
        raise VbnfError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if args.resume and not ckpt_path.exists():
        raise VbnfError(f"{ckpt_path} does not exist: nothing to resume; drop --resume to start a new run")
    dataset = load_dataset(args.data, "train", downscale=args.downscale)
    warn_unmasked_random_background(args, dataset)
    fingerprint = dataset_fingerprint(args.data, dataset, args.downscale)
    ckpt = None
    if args.resume:
        ckpt = load_checkpoint(ckpt_path)
        note = check_resume(ckpt, fingerprint, args, explicit, ckpt_path)
        if note:
            print(f"vbnf train: warning: {note}", file=sys.stderr)
        args.grid = ckpt["kind"]  # the learning-rate default follows the resumed grid
    batch = args.batch or default_batch(device)
    grid_lr = args.grid_lr if args.grid_lr is not None else DEFAULT_GRID_LR[args.grid]
    settings = TrainSettings(steps=args.steps, batch_rays=batch, lr=args.lr, grid_lr=grid_lr,
                             codebook_lr=args.codebook_lr, optimizer=args.optimizer, seed=args.seed,
                             random_background=args.random_background, lod_bias=lod_bias_of(args, ckpt))
    if ckpt is not None:
        try:
            trainer = trainer_from_checkpoint(ckpt, dataset, device, settings)
        except VbnfError as e:
            raise VbnfError(f"{ckpt_path}: {e}") from None
        del ckpt
        print(f"resuming {out} at step {trainer.step_count}")
    else:
        args.max_level = args.max_level or (CUDA_MAX_LEVEL if device.type == "cuda" else CPU_MAX_LEVEL)
        if not 1 <= args.base_level <= args.max_level:
            raise VbnfError(f"--base-level {args.base_level} must be between 1 and --max-level {args.max_level}")
        octree = carved_octree_that_fits(dataset, args, device, batch)
        out.mkdir(parents=True, exist_ok=True)
        # passed straight in: a name kept here would hold the unpruned field (and its GPU memory) all run long
        trainer = Trainer(new_field(dataset, args.grid, args.bits if args.grid != "dense" else None, args.max_level,
                                    args.base_level, args.feature_dim, args.seed, device, octree=octree,
                                    codebook_std=settings.codebook_std), dataset, settings, device)
        del octree
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
                save_checkpoint(trainer, ckpt_path, fingerprint)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        save_checkpoint(trainer, ckpt_path, fingerprint)
        save_run_model(trainer, model_path)
        print(f"interrupted at step {trainer.step_count}: saved {ckpt_path} and {model_path}; "
              f"continue with: vbnf train {args.data} --out {out} --resume")
        return 130
    if bar is not None:
        bar.close()
    save_checkpoint(trainer, ckpt_path, fingerprint)
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
    warn_unmasked_random_background(args, dataset)
    batch = args.batch or default_batch(device)
    recipe = recipe_for_budget(args.size, device.type, args.steps, masked=dataset.alphas is not None)
    if args.max_level:
        recipe.max_level = args.max_level
    recipe.base_level, recipe.feature_dim = args.base_level or 2, args.feature_dim or 16
    if args.lod_bias:
        recipe.lod_bias = args.lod_bias
    if not 1 <= recipe.base_level <= recipe.max_level:
        raise VbnfError(f"--base-level {recipe.base_level} must be between 1 and --max-level {recipe.max_level}")
    # refused here, before training, when the levels would not fit (as a --grid run is; the estimate of a dense grid,
    # which the vq method's finest bits cost about as much as), and carved once for the recipe
    dense_phase = argparse.Namespace(grid="dense", bits=None, max_level=recipe.max_level,
                                     base_level=recipe.base_level, feature_dim=recipe.feature_dim)
    octree = carved_octree_that_fits(dataset, dense_phase, device, batch)
    settings = TrainSettings(steps=recipe.steps, batch_rays=batch, lr=args.lr,
                             grid_lr=DEFAULT_GRID_LR["vq"] if args.grid_lr is None else args.grid_lr,
                             codebook_lr=args.codebook_lr, optimizer=args.optimizer, seed=args.seed,
                             random_background=args.random_background)
    check_budget(dataset, recipe, args.seed, octree)  # refused before anything is printed or made
    out.mkdir(parents=True, exist_ok=True)
    print(f"training for {args.size:,} bytes on {dataset.root} ({dataset.images.shape[0]} images) on {device}: "
          f"{recipe.steps} steps (occupancy, then vq with the bits per level chosen for the budget), "
          f"{recipe.max_level - recipe.base_level + 1} LODs")
    bar = None
    if not args.quiet:
        from tqdm import tqdm
        bar = tqdm(total=recipe.steps, unit="step", dynamic_ncols=True, file=sys.stdout)
    done = {"occupancy": 0, "vq": 0}

    def progress(phase: str, trainer: Trainer) -> None:
        if bar is not None:
            bar.update(trainer.step_count - done[phase])
            recent = trainer.history[-50:]
            bar.set_postfix(phase=phase, psnr=f"{statistics.mean(s['psnr'] for s in recent):.2f}")
        done[phase] = trainer.step_count

    t0 = time.perf_counter()
    try:
        tuner, recipe = train_for_budget(dataset, recipe, settings, device, progress, octree=octree)
    except RecipeInterrupted as stop:
        if bar is not None:
            bar.close()
        if stop.trainer is None:
            print(f"interrupted after {stop.steps_done} steps, in the occupancy phase: a --size model exists from "
                  "the vq phase on (its bits are chosen there); nothing was written")
            return 130
        size = save_run_model(stop.trainer, model_path, {"recipe": asdict(stop.recipe), "interrupted": True})
        print(f"interrupted after {stop.steps_done} of {stop.recipe.steps} steps: wrote {model_path} ({size:,} bytes, "
              f"budget {args.size:,}), a model trained for fewer steps than the recipe's")
        return 130
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print(f"interrupted after {sum(done.values())} steps: nothing was written")
        return 130
    if bar is not None:
        bar.close()
    size = save_run_model(tuner, model_path, {"recipe": asdict(recipe)})
    print(f"done: {recipe.steps} steps in {time.perf_counter() - t0:.1f} s (bits per level "
          f"{'/'.join(map(str, recipe.level_bits))}); wrote {model_path} ({size:,} bytes, budget {args.size:,})")
    return 0
