"""Re-quantising a model to another bitwidth, and `vbnf convert MODEL --bits B [--out PATH]`.

- dense -> "kmeans": k-means of each level's features into 2^B codebook rows (`kmeans_grid_from_dense`).
- vq / random / kmeans -> fewer bits: per level, weighted k-means over the codebook rows (weight = how many corners
  use the row) into 2^B rows, with the quantiser training uses (engine.quantize.kmeans); every index is remapped through the row's cluster. Only rows in use take part, so when
  at most 2^B rows are used the conversion is exact.
- vq / random / kmeans -> more bits: the codebook is split: row r + j * 2^b is row r plus (for j > 0) a tiny seeded
  perturbation; indices are unchanged, so the rendered image is identical until training moves the copies apart.
The grid kind is kept, except dense which becomes kmeans. The decoder, octree and corner tables are shared.

`--finetune STEPS` then trains the converted model's codebooks and decoder on its data set with the indices fixed
(`finetune`): k-means of codebook rows minimises the feature error, not the image error, and a few hundred steps
recover part of the loss (docs/FORMAT.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from engine.cli_checks import MAX_STEPS, int_in, seed_int
from engine.errors import VbnfError
from engine.field import InferenceField
from engine.grids import LevelRows, kmeans_grid_from_dense
from engine.quantize import kmeans
from engine.limits import MAX_BITS, MIN_BITS

SPLIT_NOISE = 1e-3  # perturbation of split codebook rows, relative to the codebook's RMS


def convert_bits(field: InferenceField, bits: int, seed: int = 0) -> InferenceField:
    """The same model with `bits`-bit indices at every LOD (see the module docstring for each case).

    bits: MIN_BITS..MAX_BITS (1..16). Returns a new InferenceField on the field's device; `metadata["conversions"]` gains one entry
    (from/to grid and bits, method, seed) and the stored "metrics", which described the source model, move into it.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise VbnfError(f"--bits must be an integer in {MIN_BITS}..{MAX_BITS}, got {bits!r}")
    if field.grid_kind == "dense":
        levels = kmeans_grid_from_dense(field.levels, bits, seed=seed)
        kind, method = "kmeans", "kmeans-of-dense"
    else:
        levels = [rebit_level(rows, bits, seed + k) for k, rows in enumerate(field.levels)]
        old = field.bits
        kind, method = field.grid_kind, "merge" if bits < old else "split" if bits > old else "none"
    metadata = dict(field.metadata)
    entry = {"from_grid": field.grid_kind, "from_bits": field.bits, "to_grid": kind, "to_bits": bits,
             "method": method, "seed": seed}
    if "metrics" in metadata:
        entry["source_metrics"] = metadata.pop("metrics")
    metadata["conversions"] = list(metadata.get("conversions", [])) + [entry]
    return InferenceField(field.scene_center, field.scene_half_size, field.octree, field.base_level,
                          [LevelRows(r.codebook.to(field.device), r.indices.to(field.device), None, r.bits)
                           for r in levels],
                          field.corners, field.decoder, kind, field.n_lods, metadata)


def finetune(field: InferenceField, dataset, steps: int, device: torch.device | str, batch_rays: int,
             progress=None) -> InferenceField:
    """`field` (a converted codebook model) after `steps` optimiser steps of its codebooks and decoder on `dataset`
    with every index fixed (trained as a kmeans grid: the conversion's assignment stays, only the rows and the
    decoder move), at the learning rates its own run ended at (engine.train.continuation_settings), `batch_rays`
    rays a step. Returns a new InferenceField of the same grid kind on `device`; its metadata's last conversion
    records the steps. progress(trainer) is called after every chunk of steps."""
    from engine.train import Trainer, continuation_settings, trainable_from_inference
    if field.grid_kind == "dense":
        raise VbnfError("--finetune needs a codebook model (vq, random or kmeans), not dense features")
    settings = continuation_settings(field, steps, batch_rays)
    trainer = Trainer(trainable_from_inference(dataclasses.replace(field, grid_kind="kmeans"), settings.seed),
                      dataset, settings, device)
    while trainer.step_count < steps:
        trainer.step(min(50, steps - trainer.step_count))
        if progress is not None:
            progress(trainer)
    metadata = dict(field.metadata)
    conversions = [dict(c) for c in metadata.get("conversions", [])] or [{}]
    conversions[-1]["finetune"] = {"steps": steps, "batch_rays": batch_rays, "dataset": str(dataset.root),
                                   "seconds": round(trainer.train_seconds, 2)}
    metadata["conversions"] = conversions
    tuned = trainer.freeze()
    return dataclasses.replace(tuned, grid_kind=field.grid_kind, metadata=metadata)


def rebit_level(rows: LevelRows, bits: int, seed: int = 0) -> LevelRows:
    """One codebook level at `bits` bits: merged (fewer), split (more) or unchanged (same)."""
    if rows.codebook is None or rows.indices is None or rows.bits is None:
        raise ValueError("rebit_level needs a codebook level (vq, random or kmeans)")
    if bits < rows.bits:
        return merge_codebook(rows, bits, seed)
    if bits > rows.bits:
        return split_codebook(rows, bits, seed)
    return LevelRows(rows.codebook.clone(), rows.indices.clone(), None, rows.bits)


def merge_codebook(rows: LevelRows, bits: int, seed: int = 0) -> LevelRows:
    """Fewer codebook rows: weighted k-means of the used rows [2^b, F] -> [2^bits, F], indices remapped.

    Weights are the corner counts per row, so the result minimises the summed squared feature error over corners.
    When at most 2^bits rows are used, they are kept exactly (unused new rows repeat the last one).
    """
    codebook = rows.codebook.detach().float().cpu().numpy()
    indices = rows.indices.detach().cpu().numpy()
    counts = np.bincount(indices, minlength=codebook.shape[0])
    used = np.flatnonzero(counts)
    k = 1 << bits
    remap = np.zeros(codebook.shape[0], dtype=np.int64)
    if used.size <= k:
        keep = used if used.size else np.arange(min(k, codebook.shape[0]))
        centroids = codebook[np.concatenate([keep, np.full(k - keep.size, keep[-1])])]
        remap[used] = np.arange(used.size)
    else:
        # the training quantiser (engine.quantize.kmeans, as the --size recipe uses), weighted by corner counts
        centroids, assignment = kmeans(torch.from_numpy(codebook[used]), k,
                                       weights=torch.from_numpy(counts[used].astype(np.float32)), iterations=25,
                                       seed=seed)
        centroids, assignment = centroids.numpy(), assignment.numpy()
        remap[used] = assignment
    new_indices = torch.from_numpy(remap.astype(np.int32)[indices]).to(rows.indices.device)
    return LevelRows(codebook=torch.from_numpy(centroids).to(rows.codebook.device, rows.codebook.dtype),
                     indices=new_indices, bits=bits)


def split_codebook(rows: LevelRows, bits: int, seed: int = 0) -> LevelRows:
    """More codebook rows: [2^b, F] -> [2^bits, F], row r + j * 2^b = row r + j-th tiny perturbation (none for j = 0);
    indices unchanged, so every corner keeps exactly its feature."""
    codebook = rows.codebook
    copies = 1 << (bits - rows.bits)
    gen = torch.Generator().manual_seed(seed)
    scale = SPLIT_NOISE * float(codebook.detach().float().pow(2).mean().sqrt().clamp_min(1e-6))
    noise = torch.randn((copies - 1, *codebook.shape), generator=gen) * scale
    extra = codebook.detach().unsqueeze(0) + noise.to(codebook.device, codebook.dtype)
    return LevelRows(codebook=torch.cat([codebook.detach().unsqueeze(0), extra]).reshape(-1, codebook.shape[1]),
                     indices=rows.indices.clone(), bits=bits)


# ---------------------------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a .vbnf model file")
    parser.add_argument("--bits", type=int_in(MIN_BITS, MAX_BITS, "a bitwidth"), required=True,
                        help=f"target bits per corner index ({MIN_BITS}..{MAX_BITS})")
    parser.add_argument("--out", help="output file (default: MODEL's stem + _b<BITS>.vbnf next to it)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.add_argument("--seed", type=seed_int, default=0, help="k-means / perturbation seed")
    parser.add_argument("--finetune", type=int_in(0, MAX_STEPS, "a step count"), default=0, metavar="STEPS",
                        help="then train the codebooks and decoder this many steps on the model's data set with the "
                             "indices fixed (recovers part of a merge's loss; default 0: none)")
    parser.add_argument("--data", default=None,
                        help="data set for --finetune (default: the one the model was trained on, from its metadata)")
    parser.add_argument("--device", default="auto", help="--finetune's device: auto (default), cpu or cuda")


def default_out_path(model: str, bits: int) -> str:
    stem, _ = os.path.splitext(model)
    return f"{stem}_b{bits}.vbnf"


def run(args: argparse.Namespace) -> int:
    from engine.fileformat import load_model, model_layout, save_model, theoretical_bytes

    out = args.out or default_out_path(args.model, args.bits)
    if os.path.exists(out) and not args.force:
        raise VbnfError(f"{out} exists; pass --force to overwrite it or --out to choose another file")
    before = model_layout(args.model)
    field = load_model(args.model)
    start = time.perf_counter()
    converted = convert_bits(field, args.bits, seed=args.seed)
    seconds = time.perf_counter() - start
    if args.finetune:
        converted = finetune_from_cli(converted, args)
    written = save_model(out, converted)
    old_bits = "fp16 features" if field.bits is None else f"{field.bits} bits"
    print(f"{args.model}: {field.grid_kind}, {old_bits}, {before.total_bytes} bytes "
          f"(theoretical {theoretical_bytes(field)})")
    print(f"{out}: {converted.grid_kind}, {args.bits} bits, {written} bytes (theoretical "
          f"{theoretical_bytes(converted)}), {100.0 * written / before.total_bytes:.1f}% of the input; "
          f"converted in {seconds:.3f} s")
    return 0


def finetune_from_cli(converted: InferenceField, args: argparse.Namespace) -> InferenceField:
    """`vbnf convert --finetune`: the data set from --data or the model's metadata, one line when it is missing."""
    from engine.data import load_dataset, resolve_dataset
    from engine.evaluate import pick_device
    from engine.train_cli import default_batch
    from tqdm import tqdm
    data = args.data or resolve_dataset(converted.metadata.get("dataset", ""), Path(args.model))
    if not data:
        raise VbnfError(f"{args.model} does not name the data set it was trained on; pass --data DIR for --finetune")
    if not Path(data).exists():
        raise VbnfError(f"--finetune: the data set {data} is not there; pass --data DIR (the folder with "
                        "transforms_train.json or transforms.json)")
    device = pick_device(args.device)
    dataset = load_dataset(data, "train")
    batch = default_batch(device)
    start = time.perf_counter()
    with tqdm(total=args.finetune, unit="step", dynamic_ncols=True, file=sys.stdout, desc="fine-tune") as bar:
        tuned = finetune(converted, dataset, args.finetune, device, batch,
                         progress=lambda trainer: bar.update(trainer.step_count - bar.n))
    print(f"fine-tuned the codebooks and decoder {args.finetune} steps on {data} ({device.type}, {batch} rays a "
          f"step) in {time.perf_counter() - start:.1f} s")
    return tuned
