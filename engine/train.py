"""Training: batched random rays, the torch renderer, Adam or RMSprop, random LODs weighted toward fine ones.

`TrainSettings` is a value; `Trainer` is the run state (field, optimiser, step, history) that both the command line
and the viewer's live training drive in bounded chunks (`Trainer.step(n)`).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Literal

import torch

from engine.cameras import rays_from_pixels
from engine.cuda.grid_features import fused_features_reason, grid_features
from engine.data import Dataset
from engine.errors import VbnfError
from engine.field import InferenceField, NeuralField
from engine.grids import Bits, GridKind, LevelRows, level_bits, normal_bits
from engine.limits import MAX_BITS, MIN_BITS
from engine.occupancy import cells_to_keep, initial_octree, prune_field
from engine.octree import Octree, octree_from_cells
from engine.render import default_step, max_samples_per_ray, render_rays
from engine.sample_budget import SampleBudgets


log = logging.getLogger("vbnf.train")


class TrainingDiverged(VbnfError):
    """The loss became NaN or infinite."""


@dataclass
class TrainSettings:
    """Hyper-parameters of one training run (all plain values, saved in checkpoints and model metadata)."""

    steps: int = 10000
    """Optimiser steps of the whole run."""
    batch_rays: int = 4096
    """Rays per step."""
    lr: float = 5e-3
    """Decoder learning rate."""
    grid_lr: float = 3e-2
    """Feature and logit learning rate (grids want a larger one)."""
    codebook_lr: float | None = None
    """Codebook learning rate (vq, random); None: grid_lr. A codebook row is shared by many corners."""
    soft_fraction: float = 0.0
    """vq: for this first fraction of the run the forward pass uses softmax(logits) @ codebook (a relaxation) before
    switching to the straight-through argmax."""
    optimizer: Literal["adam", "rmsprop"] = "adam"
    """Optimiser of the features, codebooks and decoder. The vq logits always use engine.optim.VQLogitsAdam."""
    logit_beta1: float = 0.0
    """VQLogitsAdam's first-moment decay for the vq logits. 0 (no momentum) keeps one copy of the logits less and
    measured no worse than 0.9 (docs/ENGINE.md)."""
    lr_final_ratio: float = 0.1
    """Learning rates decay exponentially to this fraction at the last step."""
    lod_bias: float = 2.0
    """P(LOD k) is proportional to lod_bias**k: fine LODs are trained most, coarse ones enough to stay usable."""
    prune_at: tuple[float, ...] = (0.2, 0.5)
    """Fractions of the run at which cells whose density stays negligible are removed."""
    prune_alpha: float = 0.005
    """A finest cell is pruned when its largest alpha over one ray step is below this."""
    seed: int = 0
    vq_estimator: Literal["ste", "reinmax"] = "ste"
    """vq: the logits' gradient estimator (engine.grids.ste_gradient)."""
    codebook_std: float = 0.1
    """vq, random: standard deviation of a new codebook's entries (used where the field is made: `new_field`)."""
    random_background: bool = False
    """Where the data set has alpha masks, each ray is trained against its pixel composited anew on a random colour
    (uniform in [0,1]^3, drawn per ray), and renders on that colour: space that the masks call empty has to be
    transparent, not painted the data set's background colour (instant-ngp trains NeRF-Synthetic this way). No
    effect without masks."""
    skip_hidden: bool = True
    """Evaluate with gradients only the samples a ray still sees (transmittance >= 1e-4), after a cheap pass
    without gradients (engine.render.render_rays)."""


def new_field(dataset: Dataset, kind: GridKind, bits: Bits | None, max_level: int, base_level: int,
              feature_dim: int = 16, seed: int = 0, device: torch.device | str = "cpu",
              octree: Octree | None = None, codebook_std: float = 0.1) -> NeuralField:
    """An untrained field whose octree is carved from the data set's alpha masks (dense without them), or is
    `octree` (one carved earlier for the same data set and max_level)."""
    if not 1 <= base_level <= max_level:
        raise VbnfError(f"--base-level {base_level} must be between 1 and --max-level {max_level}")
    if kind != "dense":
        try:
            level_bits(bits, max_level - base_level + 1)
        except ValueError as e:
            raise VbnfError(f"{e} (a {kind} grid)") from None
    if octree is None:
        octree = initial_octree(dataset.cameras, dataset.alphas, dataset.scene_center, dataset.scene_half_size,
                                max_level, device)
    if octree.cells[-1].numel() == 0:
        raise VbnfError(f"{dataset.root}: carving with the alpha masks left no occupied cell; "
                        "check that the images have an alpha channel with the object opaque")
    return NeuralField(octree, base_level, kind, feature_dim, bits, dataset.scene_center, dataset.scene_half_size,
                       seed=seed, codebook_std=codebook_std)


def trainable_from_inference(field: InferenceField, seed: int = 0, logit_margin: float = 4.0) -> NeuralField:
    """A NeuralField that renders like `field` and can keep training (the viewer's live training).

    Each kind keeps training as itself (FeatureGrid.load_level): vq through logits that pick the stored index by
    `logit_margin`; kmeans (the --size recipe's last phase) and random with their indices fixed; dense as dense. The field must hold all its LODs.
    """
    if field.max_lod != field.n_lods - 1:
        raise VbnfError("this model is a partial prefix; load all of it before training")
    kind: GridKind = field.grid_kind
    bits = None if kind == "dense" else normal_bits(tuple(field.level_bits))
    out = NeuralField(field.octree.to("cpu"), field.base_level, kind, field.feature_dim, bits,
                      field.scene_center.cpu(), field.scene_half_size, seed=seed)
    with torch.no_grad():
        for k, rows in enumerate(field.levels):
            cpu = LevelRows(**{f: (v.cpu() if isinstance(v, torch.Tensor) else v) for f, v in vars(rows).items()})
            out.grid.load_level(k, cpu, logit_margin)
        for name, value in field.decoder.items():
            out.decoder[name].copy_(value.cpu())
    return out


MAX_LOD_BIAS = 1000.0
"""Largest TrainSettings.lod_bias a run takes (vbnf train --lod-bias; a model's stored one): all the steps at the
finest LOD, for any practical purpose."""

MAX_LEARNING_RATE = 10.0
"""Largest learning rate taken from a model's stored training settings (far above any that trains)."""

DEFAULT_GRID_LR = {"dense": 3e-2, "vq": 0.1, "random": 3e-2}
"""Grid learning rate per kind (bench/train_quality.py's defaults; the vq logits want the larger one)."""


def continuation_settings(field: InferenceField, steps: int, batch_rays: int) -> TrainSettings:
    """Settings that continue `field`'s training for `steps` steps of `batch_rays` rays: the optimiser and LOD
    weights the model was trained with (metadata["train_settings"], else the defaults), and the learning rates its
    run ended at (initial x lr_final_ratio), held constant. No pruning (the octree is the model's), no soft warm-up,
    and a codebook model's indices stay as they are (the vq logits' rate is 0; codebooks and decoder train), so the
    first steps refine the model rather than shake it (the viewer's live training; `vbnf convert --finetune`).

    Why the indices stay (H200, lego 400, a vq b=6 model after 2,150 steps, 8 val views, 2026-12-03): continuing
    with the logits rebuilt from the indices (margin 4) at the ended rate took val PSNR 30.46 -> 30.77 -> 30.61 ->
    30.23 dB at 500/1,000/1,500 steps (a fresh Adam moves every logit by about its rate each step, so indices
    drift); with the indices fixed 30.84 -> 30.86 -> 30.88 (docs/VIEWER.md)."""
    stored = field.metadata.get("train_settings") if isinstance(field.metadata.get("train_settings"), dict) else {}
    kind = {"kmeans": "vq"}.get(field.grid_kind, field.grid_kind)
    defaults = TrainSettings()

    value = partial(stored_number, stored)  # value(name, default, low, high[, open_low])

    ratio = float(value("lr_final_ratio", defaults.lr_final_ratio, 0.0, 1.0))
    ratio = max(ratio, 1e-4)
    grid_lr = float(value("grid_lr", DEFAULT_GRID_LR.get(kind, defaults.grid_lr), 0.0, MAX_LEARNING_RATE))
    codebook_lr = value("codebook_lr", None, 0.0, MAX_LEARNING_RATE)
    if kind != "dense":  # the indices stay: the codebooks keep their rate, the logits get none
        codebook_lr, grid_lr = (grid_lr if codebook_lr is None else codebook_lr), 0.0
    optimizer = stored.get("optimizer") if stored.get("optimizer") in ("adam", "rmsprop") else defaults.optimizer
    seed = value("seed", 0, 0, 2 ** 31 - 2, open_low=False)
    return TrainSettings(steps=steps, batch_rays=batch_rays,
                         lr=float(value("lr", defaults.lr, 0.0, MAX_LEARNING_RATE)) * ratio, grid_lr=grid_lr * ratio,
                         codebook_lr=None if codebook_lr is None else float(codebook_lr) * ratio,
                         optimizer=optimizer,
                         logit_beta1=float(value("logit_beta1", defaults.logit_beta1, 0.0, 0.999, open_low=False)),
                         lr_final_ratio=1.0, lod_bias=float(value("lod_bias", defaults.lod_bias, 0.0, MAX_LOD_BIAS)),
                         prune_at=(), seed=int(seed) + 1)


def stored_number(stored: dict, name: str, default, low: float, high: float, open_low: bool = True):
    """stored[name] when it is a finite number in (low, high] ([low, high] without open_low), else `default`: the
    check for a setting read back from a model file or a checkpoint, which are untrusted."""
    v = stored.get(name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return default
    return v if (v > low if open_low else v >= low) and v <= high else default


def lod_probabilities(n_lods: int, bias: float) -> torch.Tensor:
    """float [n_lods]: P(LOD k) proportional to bias^k (TrainSettings.lod_bias), computed relative to the finest LOD
    so that no power overflows; ValueError for a bias that is not a positive finite number."""
    if not (isinstance(bias, (int, float)) and math.isfinite(bias) and bias > 0):
        raise ValueError(f"lod_bias must be a positive finite number, got {bias!r}")
    w = torch.exp(torch.arange(n_lods, dtype=torch.float64).sub(n_lods - 1) * math.log(bias))
    return (w / w.sum()).float()


class Trainer:
    """Run state of one training run: the field, its optimiser, the step counter and the loss history.

    dataset images stay on `device`; `step(n)` does n optimiser steps and returns their stats.
    """

    def __init__(self, field: NeuralField, dataset: Dataset, settings: TrainSettings,
                 device: torch.device | str = "cpu", step: int = 0):
        self.device = torch.device(device)
        self.settings = settings
        self.dataset = dataset
        self.field = field.to(self.device)
        self.images = dataset.images.to(self.device)
        # poses on the training device; the distortion coefficients stay on the host, where rays_from_pixels tests
        # them without waiting for the device
        self.cameras = replace(dataset.cameras, c2w=dataset.cameras.c2w.to(self.device))
        self.background = torch.tensor(dataset.background, dtype=torch.float32, device=self.device)
        self.alphas = None
        """uint8 [N,H,W] alpha masks on the device, kept for `TrainSettings.random_background` only."""
        if settings.random_background and dataset.alphas is not None:
            self.alphas = (dataset.alphas * 255.0).round().to(torch.uint8).to(self.device)
        self.step_count = step
        self.history: list[dict] = []
        self.generator = torch.Generator(device=self.device).manual_seed(settings.seed + step)
        """Draws the rays (cameras, pixels, sample offsets) on the training device: nothing is copied per step."""
        self.lod_generator = torch.Generator(device="cpu").manual_seed(settings.seed + step)
        """Draws each step's LOD on the host: the LOD chooses which levels the step runs, so it has to be a host
        value, and drawing it there costs no synchronisation with the device."""
        self._pending: list[tuple[int, int, torch.Tensor, torch.Tensor, tuple | None]] = []
        """(step, lod, loss on the device, its sample counts on the device, the sample sizes it ran with) of the
        steps not read yet (read once per `step(n)` call: one synchronisation per call, not several per step)."""
        self.sample_budgets = SampleBudgets() if self.device.type == "cuda" else None
        """Sizes of the packed sample arrays (engine/sample_budget.py), so that a step on CUDA never waits for the
        device; None: exact compaction (on the CPU there is no device to wait for, and padding would cost)."""
        self._stats_read: list[dict] = []
        self._good_state: dict[str, torch.Tensor] | None = None
        """A copy of the field's tensors at the last step whose losses were all finite (the NaN guard's rollback)."""
        self.lod_p = lod_probabilities(field.n_lods, settings.lod_bias)
        self.ray_step = default_step(field.scene_half_size, field.octree.max_level)
        self.train_seconds = 0.0
        self.optimizers = self._make_optimizers()
        self._prunes_done = sum(1 for d in self._prune_steps() if d < step)
        self.fused = False
        """Features come from the fused CUDA lookup (engine/cuda/grid_features.py), not the torch one."""
        if self.device.type == "cuda":
            why = fused_features_reason(self.device)
            self.fused = why is None
            if why:
                log.warning("%s; training with the torch feature lookup", why)

    def _make_optimizers(self) -> list[torch.optim.Optimizer]:
        """[the grid's index optimiser, when its kind has one (vq: VQLogitsAdam)] + [features/codebooks/decoder
        optimiser]: the index step comes first, since its gradient is computed from the codebooks before these
        move. The grid kind decides its groups and its index optimiser (FeatureGrid)."""
        s = self.settings
        grid = self.field.grid
        codebook_lr = s.grid_lr if s.codebook_lr is None else s.codebook_lr
        groups = grid.optimizer_groups(s.grid_lr, codebook_lr) + [{"params": list(self.field.decoder.values()),
                                                                   "lr": s.lr}]
        if s.optimizer == "adam":
            # fused: one kernel per step and no temporaries the size of the parameters
            optimizers = [torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15, fused=self.device.type == "cuda")]
        elif s.optimizer == "rmsprop":
            optimizers = [torch.optim.RMSprop(groups, alpha=0.99, eps=1e-10)]
        else:
            raise VbnfError(f"unknown optimizer '{s.optimizer}': use adam or rmsprop")
        index_optimizer = grid.index_optimizer(s.grid_lr, s.logit_beta1, s.vq_estimator)
        self.index_optimizer = index_optimizer
        """Steps first, from the corner tables' gradients when the grid needs them (see `step`)."""
        if index_optimizer is not None:
            optimizers.insert(0, index_optimizer)
        for opt in optimizers:
            for g in opt.param_groups:
                g["initial_lr"] = g["lr"]
        return optimizers

    def _set_learning_rate(self) -> None:
        s = self.settings
        frac = min(self.step_count / max(s.steps, 1), 1.0)
        scale = math.exp(frac * math.log(s.lr_final_ratio))
        for opt in self.optimizers:
            for g in opt.param_groups:
                g["lr"] = g["initial_lr"] * scale

    def _zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def sample_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Random pixels of random training images -> origins [R,3], dirs [R,3], target rgb [R,3], and the
        background the targets are composited on ([3], or [R,3] with `TrainSettings.random_background`), all drawn
        and built on the training device."""
        n, h, w, _ = self.images.shape
        r, g, dev = self.settings.batch_rays, self.generator, self.device
        cam = torch.randint(n, (r,), generator=g, device=dev)
        ix = torch.randint(w, (r,), generator=g, device=dev)
        iy = torch.randint(h, (r,), generator=g, device=dev)
        origins, dirs = rays_from_pixels(self.cameras, cam, ix.float() + 0.5, iy.float() + 0.5)
        target = self.images[cam, iy, ix]
        if self.alphas is None:
            return origins, dirs, target, self.background
        background = torch.rand(r, 3, generator=g, device=dev)
        transparency = 1.0 - self.alphas[cam, iy, ix].float()[:, None] / 255.0
        return origins, dirs, target + transparency * (background - self.background), background

    def step(self, n: int = 1) -> list[dict]:
        """n optimiser steps and their stats. The losses stay on the device until the end of the call, where they
        are read once; if one is not finite, the field goes back to its state after the last call whose losses
        were all finite and TrainingDiverged is raised (the optimisers' moments restart)."""
        if self._good_state is None:
            self._good_state = self._snapshot()
        t0 = time.perf_counter()
        self._stats_read: list[dict] = []
        for _ in range(n):
            self._maybe_prune()
            self._set_learning_rate()
            lod = int(torch.multinomial(self.lod_p, 1, generator=self.lod_generator))
            origins, dirs, target, background = self.sample_batch()
            offsets = torch.rand(origins.shape[0], generator=self.generator, device=self.device)
            soft = self.step_count < self.settings.soft_fraction * self.settings.steps
            tables = self.field.corner_tables(lod, soft)
            from_tables = self.index_optimizer is not None and self.field.grid.needs_table_gradients(soft)
            if from_tables:
                for t in tables:  # VQLogitsAdam computes the logits' gradient from these tables' gradients
                    t.retain_grad()
            lookup = grid_features if self.fused else None  # the fused CUDA lookup, else the torch one
            sizes = self.sample_budgets.sizes(lod) if self.sample_budgets is not None else None
            out = render_rays(self.field.field_fn(lod, lookup, tables=tables), self.field.octree,
                              self.field.base_level + lod, self.field.scene_center, self.field.scene_half_size,
                              self.ray_step, origins, dirs, background, offsets=offsets,
                              skip_hidden=self.settings.skip_hidden,
                              max_samples=max_samples_per_ray(self.field.scene_half_size, self.ray_step),
                              sample_sizes=sizes, count_samples=self.sample_budgets is not None)
            if sizes is None:
                loss = torch.mean((out["rgb"] - target) ** 2)
            else:  # the rays that lost samples to a full array (rare) sit this step out; else the same mean
                complete = out["complete"][:, None].float()
                loss = (((out["rgb"] - target) ** 2) * complete).sum() / (complete.sum() * 3.0).clamp_min(1.0)
            loss.backward()
            for opt in self.optimizers:
                if opt is self.index_optimizer:  # without table gradients it steps from its parameters' .grad
                    opt.step([t.grad for t in tables] if from_tables else None)
                else:
                    opt.step()
            del tables  # and their gradients: not kept through the next step's forward
            self._zero_grad()  # now, not before the next backward: the gradients would sit through its forward
            self.step_count += 1
            self._pending.append((self.step_count, lod, loss.detach(), out.get("sample_counts"), sizes))
        self._read_losses()
        self.train_seconds += time.perf_counter() - t0
        return self._stats_read

    def _read_losses(self) -> None:
        """Reads the pending steps' losses (one synchronisation) into the history and this call's stats; the NaN
        guard's check, rollback and snapshot."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        losses = torch.stack([loss for _, _, loss, _, _ in pending]).double().cpu().tolist()
        if self.sample_budgets is not None:
            self._update_budgets(pending)
        bad = next((step for (step, *_), mse in zip(pending, losses) if not math.isfinite(mse)), None)
        if bad is not None:
            self._restore(self._good_state)
            raise TrainingDiverged(f"training diverged at step {bad - 1} (the loss is not finite); the field is back at "
                                   "its last good state and the last checkpoint is intact: resume from it with a "
                                   "lower --lr/--grid-lr")
        stats = [{"step": step, "loss": mse, "psnr": -10.0 * math.log10(max(mse, 1e-10)), "lod": lod}
                 for (step, lod, *_), mse in zip(pending, losses)]
        self.history.extend(stats)
        self._stats_read.extend(stats)
        self._good_state = self._snapshot()

    def _update_budgets(self, pending: list) -> None:
        """The sample sizes of each LOD from the counts of the steps just read (read with their losses)."""
        counts = torch.stack([c for *_, c, _ in pending]).cpu().tolist()
        per_lod: dict[int, tuple[list[int], bool]] = {}
        for (_, lod, _, _, sizes), c in zip(pending, counts):
            top, over = per_lod.get(lod, ([0, 0, 0], False))
            over = over or (sizes is not None and any(n > s for n, s in zip(c, sizes)))
            per_lod[lod] = ([max(a, b) for a, b in zip(top, c)], over)
        for lod, (top, over) in per_lod.items():
            self.sample_budgets.update(lod, top, over)

    def roll_back(self) -> None:
        """Back to the state after the last complete `step(n)` call, step count included: after an interruption
        (Ctrl-C) inside one, which may have left some parameters stepped and others not. The optimisers' moments
        restart."""
        self.step_count -= len(self._pending)
        self._restore(self._good_state)

    def _snapshot(self) -> dict[str, torch.Tensor]:
        """Copies of the field's parameters and buffers, on their device."""
        return {k: v.detach().clone() for k, v in self.field.state_dict().items()}

    def _restore(self, state: dict[str, torch.Tensor] | None) -> None:
        """Puts the field back to `state` (a `_snapshot`) and restarts the optimisers' moments."""
        self._pending = []
        self._zero_grad()
        if state is None:
            return
        with torch.no_grad():
            for k, v in self.field.state_dict().items():
                v.copy_(state[k])
        self.field.grid.refresh_indices()
        for opt in self.optimizers:
            opt.state.clear()

    def _prune_steps(self) -> list[int]:
        return sorted(max(1, int(f * self.settings.steps)) for f in self.settings.prune_at)

    def _maybe_prune(self) -> None:
        # Counting done prunes (not testing step == due) keeps every prune when settings.steps is re-estimated
        # during a run (bench/train_quality.py --seconds).
        due = self._prune_steps()
        if self._prunes_done >= len(due) or self.step_count < due[self._prunes_done]:
            return
        self._prunes_done += 1
        self.prune()

    def prune(self) -> None:
        """Removes the finest cells whose largest alpha over one ray step is below `settings.prune_alpha` (the
        scheduled prunes of `prune_at` call this; the --size recipe also calls it at the end of its occupancy
        phase)."""
        self._read_losses()  # check the steps so far before the field changes shape (and the snapshot with it)
        keep = cells_to_keep(self.field, self.ray_step, self.settings.prune_alpha)
        if bool(keep.all()) or not bool(keep.any()):  # nothing to remove (or everything: keep the field then)
            return
        # The old gradients and moments need not coexist with the reshaped field, which gets new optimisers: at
        # b = 8 the logits' moments are GBs.
        self._zero_grad()
        for opt in self.optimizers:
            opt.state.clear()
        self.field = prune_field(self.field, keep)
        self.optimizers = self._make_optimizers()
        if self.sample_budgets is not None:
            self.sample_budgets.reset()  # fewer cells, fewer samples: measured again
        self._good_state = self._snapshot()

    def freeze(self, metadata: dict | None = None) -> InferenceField:
        meta = {"train_steps": self.step_count, "train_seconds": round(self.train_seconds, 2),
                "train_settings": asdict(self.settings), "dataset": str(Path(self.dataset.root).resolve())}
        meta.update(metadata or {})
        return self.field.freeze(meta)

    # -- checkpoints: plain tensors and values, read back with torch.load(weights_only=True) ------------------
    def checkpoint(self) -> dict:
        f = self.field
        return {
            "format": "vbnf-checkpoint-1", "step": self.step_count, "settings": asdict(self.settings),
            "kind": f.kind, "bits": list(f.grid.bits) if isinstance(f.grid.bits, tuple) else f.grid.bits,
            "feature_dim": f.grid.feature_dim, "base_level": f.base_level,
            "scene_center": f.scene_center.cpu(), "scene_half_size": f.scene_half_size,
            "cells": [c.cpu() for c in f.octree.cells], "field": {k: v.cpu() for k, v in f.state_dict().items()},
            "optimizers": [opt.state_dict() for opt in self.optimizers], "train_seconds": self.train_seconds,
            "history": self.history[-2000:],
        }


CHECKPOINT_KEYS = ("format", "step", "settings", "kind", "bits", "feature_dim", "base_level", "scene_center",
                   "scene_half_size", "cells", "field")


def load_checkpoint(path) -> dict:
    """The checkpoint at `path` (plain tensors and values), or a one-line VbnfError when it is unreadable, truncated,
    not a vbnf checkpoint, or holds a field of the wrong type."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        why = f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__
        raise VbnfError(f"{path}: cannot read the checkpoint ({why}); it is truncated or not a vbnf checkpoint: "
                        "start a new run with another --out") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing or ckpt.get("format") != "vbnf-checkpoint-1":
        raise VbnfError(f"{path}: not a vbnf checkpoint (missing {', '.join(missing) or 'its format tag'}); "
                        "start a new run with another --out")
    bad = checkpoint_type_error(ckpt)
    if bad:
        raise VbnfError(f"{path}: damaged checkpoint: {bad}; start a new run with another --out")
    return ckpt


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def checkpoint_type_error(ckpt: dict) -> str:
    """'' when every field of a checkpoint has the type `field_from_checkpoint` needs, else what is wrong (one
    line)."""
    def tensor(v, ndim=None):
        return isinstance(v, torch.Tensor) and (ndim is None or v.ndim == ndim)
    bits = ckpt["bits"]
    checks = [
        ("step", _is_int(ckpt["step"]) and ckpt["step"] >= 0, "a non-negative integer"),
        ("settings", isinstance(ckpt["settings"], dict), "a dict"),
        ("kind", ckpt["kind"] in ("dense", "vq", "random"), "dense, vq or random"),
        ("bits", bits is None or (_is_int(bits) and MIN_BITS <= bits <= MAX_BITS)
         or (isinstance(bits, (list, tuple)) and bool(bits)
             and all(_is_int(b) and MIN_BITS <= b <= MAX_BITS for b in bits)),
         f"None, an integer {MIN_BITS}..{MAX_BITS} or a list of them"),
        ("feature_dim", _is_int(ckpt["feature_dim"]) and 1 <= ckpt["feature_dim"] <= 4096, "an integer 1..4096"),
        ("base_level", _is_int(ckpt["base_level"]) and 0 <= ckpt["base_level"] <= 20, "an integer 0..20"),
        ("scene_center", tensor(ckpt["scene_center"]) and ckpt["scene_center"].shape == (3,)
         and bool(torch.isfinite(ckpt["scene_center"]).all()), "a finite float tensor [3]"),
        ("scene_half_size", isinstance(ckpt["scene_half_size"], (int, float)) and not isinstance(
            ckpt["scene_half_size"], bool) and math.isfinite(ckpt["scene_half_size"]) and ckpt["scene_half_size"] > 0,
         "a positive number"),
        ("cells", isinstance(ckpt["cells"], list) and 1 <= len(ckpt["cells"]) <= 21
         and all(tensor(c, 1) and not c.is_floating_point() for c in ckpt["cells"]),
         "a list of 1..21 integer tensors [n]"),
        ("field", isinstance(ckpt["field"], dict) and all(isinstance(k, str) and tensor(v)
                                                           for k, v in ckpt["field"].items()),
         "a dict of tensors"),
        ("optimizers", ckpt.get("optimizers") is None or isinstance(ckpt.get("optimizers"), list), "a list"),
        ("history", isinstance(ckpt.get("history", []), list), "a list"),
        ("train_seconds", isinstance(ckpt.get("train_seconds", 0.0), (int, float)), "a number"),
        ("dataset", ckpt.get("dataset") is None or isinstance(ckpt.get("dataset"), dict), "a dict"),
    ]
    for name, ok, want in checks:
        if not ok:
            value = ckpt.get(name)
            shown = type(value).__name__ if isinstance(value, (torch.Tensor, dict, list)) else repr(value)[:40]
            return f"'{name}' must be {want}, got {shown}"
    return ""


def field_from_checkpoint(ckpt: dict) -> NeuralField:
    """The training field stored in a checkpoint; VbnfError (one line) when its tensors do not fit together."""
    try:
        octree = octree_from_cells([c.to(torch.int64) for c in ckpt["cells"]])
        bits = tuple(ckpt["bits"]) if isinstance(ckpt["bits"], list) else ckpt["bits"]
        field = NeuralField(octree, ckpt["base_level"], ckpt["kind"], ckpt["feature_dim"], bits,
                            ckpt["scene_center"], ckpt["scene_half_size"])
        field.load_state_dict(ckpt["field"])
        field.grid.refresh_indices()
    except (RuntimeError, ValueError, IndexError, TypeError, KeyError) as e:
        raise VbnfError(f"damaged checkpoint: its field does not load ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:200]}); start a new run with another --out") from None
    return field


def settings_from_dict(values: dict) -> TrainSettings:
    known = TrainSettings.__dataclass_fields__
    clean = {k: (tuple(v) if k == "prune_at" else v) for k, v in values.items() if k in known}
    return TrainSettings(**clean)


def trainer_from_checkpoint(ckpt: dict, dataset: Dataset, device: torch.device | str,
                            settings: TrainSettings | None = None) -> Trainer:
    trainer = Trainer(field_from_checkpoint(ckpt), dataset, settings or settings_from_dict(ckpt["settings"]),
                      device, step=ckpt["step"])
    saved = ckpt.get("optimizers")
    try:
        if saved is None or len(saved) != len(trainer.optimizers):
            raise ValueError("it was saved by another version of vbnf")
        for opt, state in zip(trainer.optimizers, saved):
            opt.load_state_dict(state)
    except ValueError as e:  # the model resumes; only the optimiser's moments restart
        log.warning("checkpoint's optimiser state not restored (%s); Adam's moments restart from zero", e)
        trainer.optimizers = trainer._make_optimizers()
    trainer.train_seconds = ckpt.get("train_seconds", 0.0)
    trainer.history = list(ckpt.get("history", []))
    return trainer
