"""Training for a byte budget: the rate-distortion recipe behind `vbnf train --size`.

Two phases, the indices trained from the first vq step (the paper's straight-through logits):

1. occupancy: a dense grid trains `occupancy_fraction` of the steps and is pruned by density halfway and at the
   end. Carving from the alpha masks keeps every cell some view cannot rule out (1.13M finest cells on lego at
   256^3, whose octree alone costs ~190 kB and whose 1-bit indices do not fit 0.25 MB); then the cells that no
   training ray sees (largest rendering weight below `visible_weight`: a solid's interior) go too. What remains
   holds the cells that a file has to pay for;
2. vq: on that octree, every level's bitwidth is chosen so that the file fits the budget (`choose_bits`: b at the
   finest level, one more per coarser level, whose corners are few; when even 1 bit does not fit, the finest levels
   are dropped), and a vq grid trains from scratch for the remaining steps.

The file stays a VQAD file (per level a codebook and b-bit indices, coarse to fine); only its training differs.
`Recipe` is a plain value saved in the model's metadata ("recipe"), which `vbnf info` shows.
"""
from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

import torch

from engine.data import Dataset
from engine.errors import VbnfError
from engine.field import InferenceField, NeuralField
from engine.grids import LevelRows
from engine.occupancy import finest_cell_visibility
from engine.octree import Octree, octree_from_finest_cells
from engine.train import DEFAULT_GRID_LR, TrainSettings, Trainer, new_field

log = logging.getLogger("vbnf.train")

MAX_RECIPE_BITS = 12
"""Largest bitwidth the recipe gives a level (a 4096-row codebook)."""

METADATA_RESERVE_BYTES = 1024
"""choose_bits leaves this much of the budget for the metadata added at save beyond the recipe (training settings,
data set path, metrics: ~600 bytes compressed on lego)."""

CUDA_RECIPE_STEPS = 20_000
"""Steps of a --size run on CUDA. Chosen on lego 400's val views (2026-12-03, docs/research/
2026-12-02-rate-distortion.md): at 0.5 MB, 20,000 steps gave 31.46 dB against 30.91 for 10,000, in 199 s on an
H200, once the trainer ran twice as fast (docs/research/2026-12-02-training-throughput.md)."""

Progress = Callable[[str, Trainer], None]
"""Called after every chunk of steps with the phase's name ("occupancy" or "vq") and its trainer."""


@dataclass
class Recipe:
    """How a model for a byte budget is trained. Plain values; saved in the model's metadata."""

    budget_bytes: int
    """The whole file's size may not exceed this."""
    steps: int = 10000
    """Optimiser steps of all phases together (`vbnf train`'s default step count)."""
    occupancy_fraction: float = 0.2
    """Share of the steps spent on the occupancy phase (a dense grid, pruned by density)."""
    visible_weight: float = 1e-3
    """After the occupancy phase, the finest cells whose largest rendering weight over
    `visibility_rays` training rays stays below this are removed (a solid's interior: no training view sees it, yet
    each of its cells costs octree and index bytes); 0 keeps them."""
    visibility_rays: int = 4_000_000
    """Random training pixels whose rays measure that visibility (all pixels when there are fewer)."""
    lod_bias: float = 4.0
    """The vq phase's `TrainSettings.lod_bias` (P(LOD k) proportional to lod_bias**k), which decides
    how the steps divide between the finest LOD (what the whole file renders) and the prefixes. Chosen on lego 400's
    val views (0.5 MB, 20,000 steps, H200, 2026-12-03): 2 (the trainer's default, half the steps at the finest
    LOD) 31.46 dB, 3: 31.89, 4: 32.32, 6: 32.36; 4 rather than 6 because the prefixes pay for it (the 29 kB LOD-2
    prefix: 22.4 dB at 2, 20.2 at 4, 19.1 at 6), docs/research/2026-12-02-rate-distortion.md."""
    max_logits: int = 1 << 28
    """The bits keep sum over levels of n_corners x 2^bits (the vq grid's logits: each also has a gradient and
    two Adam moments, 16 bytes in all) within this: 2^28 is ~4 GB. On lego at 1.5 MB it gave bits
    6/8/10/12/11/9/8 (a 995 kB file) trained in 220 s, peak 7.6 GB, on an H200 (2026-12-03, once vq_adam read
    b > 8 codebooks coalesced; 2^27 held the 1 MB model at 816 kB). What a larger budget would buy beyond it stays
    unspent (on lego from about 1 MB: docs/ENGINE.md)."""
    max_level: int = 8
    base_level: int = 2
    feature_dim: int = 16
    level_bits: tuple[int, ...] = ()
    """Chosen by the recipe (`choose_bits`, at the start of the vq phase); empty until then."""


def parse_size(text: str) -> int:
    """'500KB', '0.5M', '2MB', '120000' -> bytes (K = 1000, M = 1000^2: file sizes as users read them)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]?)[bB]?\s*", text)
    if not m:
        raise ValueError(f"not a size: '{text}' (examples: 500KB, 0.5MB, 2M, 120000)")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()]
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"a size must be at least 1 byte, got '{text}'")
    return int(value)


def recipe_for_budget(budget_bytes: int, device_type: str, steps: int | None = None, masked: bool = True) -> Recipe:
    """The recipe the project uses for a budget (docs/ENGINE.md): CUDA_RECIPE_STEPS steps on CUDA for a data set
    with alpha masks, the Recipe default (10,000) otherwise (a data set without masks trains every cell of 128^3 in
    its occupancy phase, and fox did not finish 10,000 steps within 170 s: 20,000 was not tried there), unless
    `steps` is given; 256^3 cells on CUDA (128^3 below 200 kB, and for
    a data set without alpha masks, where nothing is carved and the occupancy phase would train all 16.7M cells of
    256^3), 64^3 on the CPU. Not 512^3 for large budgets: at 2 MB on lego it left 2 bits per finest corner (2.7M
    seen cells) and did not finish within 250 s on an H200 (docs/research/2026-12-02-rate-distortion.md)."""
    if device_type == "cuda":
        max_level, rays = (7 if budget_bytes < 200_000 or not masked else 8), Recipe.visibility_rays
        default_steps = CUDA_RECIPE_STEPS if masked else Recipe.steps  # unmasked: not measured at 20,000
    else:
        max_level, rays = 6, 250_000  # 164k rays took 18 s on 2 cores at 64^3 (2026-12-02)
        default_steps = Recipe.steps
    return Recipe(budget_bytes=budget_bytes, max_level=max_level, visibility_rays=rays, steps=steps or default_steps)


def model_bytes(field: InferenceField, level_bits: tuple[int, ...], metadata: dict | None = None) -> int:
    """Size of the file `field` would make with these bitwidths (its indices and codebooks replaced by zeros)."""
    from engine.fileformat import save_model_bytes
    levels = [LevelRows(codebook=torch.zeros(1 << b, field.feature_dim), indices=torch.zeros(rows.n_corners,
                        dtype=torch.int32), bits=b) for b, rows in zip(level_bits, field.levels)]
    probe = replace(field, levels=levels, grid_kind="kmeans")
    return len(save_model_bytes(probe.to("cpu"), metadata))


def choose_bits(field: InferenceField, budget_bytes: int, metadata: dict | None = None,
                max_logits: int = Recipe.max_logits) -> tuple[int, ...]:
    """The bitwidths of step 3: the largest finest-level b for which the file fits (one more bit per coarser level,
    at most MAX_RECIPE_BITS and no more rows than a level has corners); then the budget that ladder leaves is spent
    from the finest level up, one more bit at each level where it still fits (each level at most one rung above the
    ladder). No choice has more than `max_logits` logits (Recipe.max_logits). VbnfError when even 1 bit does not fit."""
    n = [rows.n_corners for rows in field.levels]

    def fits(bits) -> bool:
        return (sum(c << b for c, b in zip(n, bits)) <= max_logits
                and model_bytes(field, tuple(bits), metadata) + METADATA_RESERVE_BYTES <= budget_bytes)

    def cap(k: int) -> int:
        return min(MAX_RECIPE_BITS, math.ceil(math.log2(max(n[k], 2))))

    def ladder(b: int) -> tuple[int, ...]:
        last = len(n) - 1
        return tuple(max(1, min(b + last - k, cap(k))) for k in range(len(n)))

    best = None
    for b in range(1, MAX_RECIPE_BITS + 1):
        if not fits(ladder(b)):
            break
        best = ladder(b)
    if best is None:
        raise VbnfError(f"--size {budget_bytes:,} bytes: even 1 bit per corner needs "
                        f"{model_bytes(field, ladder(1), metadata) + METADATA_RESERVE_BYTES:,} bytes at this level "
                        "count; give a larger --size or a smaller --max-level")
    bits = list(best)
    for k in reversed(range(len(n))):
        if bits[k] < cap(k):
            trial = bits[:k] + [bits[k] + 1] + bits[k + 1:]
            if fits(trial):
                bits = trial
    return tuple(bits)


def vq_field_for_budget(dataset: Dataset, recipe: Recipe, seed: int, device: torch.device | str,
                        codebook_std: float = 0.1, octree: Octree | None = None) -> tuple[NeuralField, Recipe]:
    """A new vq field for the budget: bits per level from `octree`'s corner counts (choose_bits; later pruning only
    shrinks the file), with the finest levels dropped while even 1 bit per corner does not fit; and the recipe with
    those bits (and its max_level). octree: the occupancy phase's (else the carved one, which over-counts cells)."""
    carved = new_field(dataset, "dense", None, recipe.max_level, recipe.base_level, recipe.feature_dim, seed, "cpu",
                       octree=None if octree is None else octree.to("cpu"))
    octree = carved.octree
    while True:
        try:
            bits = choose_bits(carved.freeze(), recipe.budget_bytes, {"recipe": asdict(recipe)}, recipe.max_logits)
            break
        except VbnfError:
            if octree.max_level <= recipe.base_level:
                raise
            octree = octree.truncated(octree.max_level - 1)
            recipe = replace(recipe, max_level=octree.max_level)
            carved = new_field(dataset, "dense", None, recipe.max_level, recipe.base_level, recipe.feature_dim,
                               seed, "cpu", octree=octree)
    del carved
    field = new_field(dataset, "vq", bits, recipe.max_level, recipe.base_level, recipe.feature_dim, seed, device,
                      octree=octree, codebook_std=codebook_std)
    return field, replace(recipe, level_bits=bits)


def check_budget(dataset: Dataset, recipe: Recipe, seed: int = 0, octree: Octree | None = None) -> None:
    """VbnfError (one line) when not even the coarsest level at 1 bit fits the budget (a --size run refuses it
    before any step). octree: the carved octree of (dataset, recipe.max_level) when the caller has it."""
    coarsest = new_field(dataset, "dense", None, recipe.base_level, recipe.base_level, recipe.feature_dim, seed,
                         "cpu", octree=None if octree is None else octree.to("cpu").truncated(recipe.base_level))
    choose_bits(coarsest.freeze(), recipe.budget_bytes, {"recipe": asdict(recipe)})


class RecipeInterrupted(KeyboardInterrupt):
    """Ctrl-C during `train_for_budget`. `trainer` is the vq phase's trainer, rolled back to
    its last complete chunk, when that phase had taken a step (its bits were chosen for the budget, so its model
    fits: a model with fewer steps); None during the occupancy phase, whose dense grid fits no budget."""

    def __init__(self, trainer: Trainer | None, recipe: Recipe, steps_done: int):
        super().__init__()
        self.trainer, self.recipe, self.steps_done = trainer, recipe, steps_done


class VqBudgetRun:
    """The recipe phase by phase, for callers that drive the steps themselves (train_for_budget, the viewer's
    Train new): step `trainer` and call `advance()` after each chunk; the occupancy phase (a dense grid with
    `vbnf train --grid dense`'s learning rate, `recipe.occupancy_fraction` of the steps, pruned by density halfway
    and at its end) hands over to the vq phase (bits chosen on the pruned octree: `vq_field_for_budget`).

    Refuses (VbnfError, before any step) a budget that not even the coarsest level at 1 bit fits.
    octree: the carved octree of (dataset, recipe.max_level) when the caller has it."""

    def __init__(self, dataset: Dataset, recipe: Recipe, settings: TrainSettings, device: torch.device | str,
                 octree: Octree | None = None):
        self.dataset, self.recipe, self.settings, self.device = dataset, recipe, settings, torch.device(device)
        check_budget(dataset, recipe, settings.seed, octree)
        self.occupancy_steps = max(1, int(recipe.steps * recipe.occupancy_fraction)) \
            if recipe.occupancy_fraction > 0 else 0
        self.seconds_before = 0.0
        """Training seconds of the phases before the current one."""
        if self.occupancy_steps:
            self.phase = "occupancy"
            field = new_field(dataset, "dense", None, recipe.max_level, recipe.base_level, recipe.feature_dim,
                              settings.seed, self.device, octree=octree)
            self.trainer = Trainer(field, dataset, replace(settings, steps=self.occupancy_steps, prune_at=(0.5,),
                                                           grid_lr=DEFAULT_GRID_LR["dense"]), self.device)
        else:
            self._start_vq(octree)

    @property
    def phase_steps(self) -> int:
        """Steps of the current phase."""
        return self.trainer.settings.steps

    @property
    def done(self) -> bool:
        return self.phase == "vq" and self.trainer.step_count >= self.trainer.settings.steps

    def advance(self) -> bool:
        """Moves to the vq phase once the occupancy phase has taken its steps; True when `trainer` changed."""
        if self.phase != "occupancy" or self.trainer.step_count < self.occupancy_steps:
            return False
        self.trainer.prune()
        t0 = time.perf_counter()
        octree = self._visible_octree()
        self.seconds_before = self.trainer.train_seconds + time.perf_counter() - t0
        self.trainer = None  # the dense grid's memory goes before the vq grid's comes
        self._start_vq(octree)
        return True

    def _visible_octree(self) -> Octree:
        """The occupancy phase's octree (on the CPU) without its finest cells that no training ray sees
        (`Recipe.visible_weight`)."""
        trainer, recipe = self.trainer, self.recipe
        octree = trainer.field.octree
        n_before = octree.cells[-1].numel()
        if recipe.visible_weight > 0:
            weight = finest_cell_visibility(trainer.field, trainer.cameras, recipe.visibility_rays, trainer.ray_step,
                                            self.settings.seed)
            keep = weight >= recipe.visible_weight
            if bool(keep.any()) and not bool(keep.all()):
                octree = octree_from_finest_cells(octree.cells[-1][keep].cpu(), octree.max_level)
        log.info("recipe: %d finest cells after the occupancy phase's density pruning, %d of them seen by the "
                 "training rays", n_before, octree.cells[-1].numel())
        return octree.to("cpu")

    def _start_vq(self, octree: Octree | None) -> None:
        field, self.recipe = vq_field_for_budget(self.dataset, self.recipe, self.settings.seed, self.device,
                                                 self.settings.codebook_std, octree)
        log.info("recipe: bits %s", "/".join(map(str, self.recipe.level_bits)))
        self.phase = "vq"
        self.trainer = Trainer(field, self.dataset,
                               replace(self.settings, steps=max(1, self.recipe.steps - self.occupancy_steps),
                                       lod_bias=self.recipe.lod_bias),
                               self.device)


def train_for_budget(dataset: Dataset, recipe: Recipe, settings: TrainSettings, device: torch.device,
                     progress: Progress | None = None, chunk: int = 50, octree=None) -> tuple[Trainer, Recipe]:
    """Runs the recipe (a VqBudgetRun to its end); returns the vq phase's trainer (freeze it for the model) and the
    recipe with its chosen bits. `settings` gives the vq phase's learning rates (DEFAULT_GRID_LR["vq"]), batch and
    seed; the steps come from the recipe. octree: the carved octree of (dataset, recipe.max_level) when the caller
    has it. Ctrl-C raises RecipeInterrupted."""
    run = VqBudgetRun(dataset, recipe, settings, device, octree)
    try:
        while not run.done:
            run.trainer.step(max(1, min(chunk, run.phase_steps - run.trainer.step_count)))
            if progress:
                progress(run.phase, run.trainer)
            run.advance()
    except KeyboardInterrupt:
        trainer = run.trainer if run.phase == "vq" else None
        if trainer is not None:
            try:
                trainer.roll_back()
            except RuntimeError:  # interrupted inside a prune, between the new field and its snapshot
                trainer = None
        if trainer is not None and trainer.step_count == 0:
            trainer = None
        done = (run.occupancy_steps if run.phase == "vq" else 0) + (run.trainer.step_count if run.trainer else 0)
        if trainer is not None:
            trainer.train_seconds += run.seconds_before
        raise RecipeInterrupted(trainer, run.recipe, done) from None
    run.trainer.train_seconds += run.seconds_before  # the model's training time: every phase
    return run.trainer, run.recipe
