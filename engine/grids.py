"""Feature grids: where a level's per-corner features come from. One interface for every kind:

    grid.corner_features(k) -> float [n_corners_k, F]   features of LOD k's corners, in corner-table order
    grid.export_level(k)    -> LevelRows                 what inference (and the file) keeps of level k

Kinds:
- dense:  float features per corner (the uncompressed NGLOD-NeRF baseline).
- vq:     VQAD. A codebook [2^b, F] and 2^b logits per corner; forward uses the codebook row of each corner's argmax,
          backward the softmax gradient (straight-through estimator). The logits are not in the autograd graph: the
          forward is codebook[argmax(logits)], and engine/optim.py's VQLogitsAdam turns the gradient that reached
          that table into the logits' gradient (`ste_gradient`) and their update, never forming an [N, 8, 2^b, F]
          tensor.
- random: fixed random indices into a learned codebook (the hash-like baseline).
- kmeans: indices from a k-means of a trained dense grid (`kmeans_grid_from_dense`, `vbnf convert` of a dense
          model); trains like random (fixed indices, learned codebooks).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from engine.limits import MAX_BITS, MIN_BITS
from engine.quantize import kmeans

GridKind = Literal["dense", "vq", "random", "kmeans"]

@dataclass
class LevelRows:
    """The feature rows of one feature level as inference keeps them (exactly one of the two forms is set).

    codebook: float [2^bits, F] and indices: int32 [n_corners] in [0, 2^bits)   (vq, random, kmeans)
    features: float [n_corners, F]                                             (dense)
    """

    codebook: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    features: torch.Tensor | None = None
    bits: int | None = None

    def table(self) -> torch.Tensor:
        """float [n_corners, F]: the feature of every corner."""
        if self.features is not None:
            return self.features
        return self.codebook[self.indices.long()]

    @property
    def n_corners(self) -> int:
        return int(self.features.shape[0] if self.features is not None else self.indices.shape[0])


ESTIMATORS = ("ste", "reinmax")
"""The vq logits' gradient estimators: "ste" (straight-through: the softmax's Jacobian) or "reinmax" (Liu et al.
2023, second-order accurate); TrainSettings.vq_estimator chooses."""


def ste_gradient(logits: torch.Tensor, codebook: torch.Tensor, grad_table: torch.Tensor,
                 estimator: str = "ste", chunk_elements: int = 1 << 24) -> tuple[torch.Tensor, torch.Tensor]:
    """The vq logits' gradient under the straight-through estimator, for the corners that received one.

    The forward pass uses codebook[argmax(logits)] as each corner's feature; grad_table is the gradient of the loss
    with respect to those features. For a corner with feature gradient v, s_j = v . codebook[j] (the first-order
    change of the loss if the corner used row j, up to a constant) and p = softmax(logits):
    - "ste": p * (s - <p, s>), the softmax's Jacobian: the gradient of (onehot - sg(p) + p) @ codebook;
    - "reinmax": 2 J(pi1) s - J(p) s / 2 with pi1 = (onehot + p) / 2, J(q) = diag(q) - q q^T.
    Nothing of size [corners, 2^b, F] is formed; the rows go in chunks of `chunk_elements` logits.

    logits: float [N, K]; codebook: float [K, F]; grad_table: float [N, F].
    Returns (rows int64 [n], ascending: the corners whose v is not zero; values float [n, K]: their gradients).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown vq estimator '{estimator}' (ste or reinmax)")
    n, k = logits.shape
    if codebook.shape[0] != k or grad_table.shape != (n, codebook.shape[1]):
        raise ValueError(f"ste_gradient: logits {tuple(logits.shape)}, codebook {tuple(codebook.shape)} and "
                         f"grad_table {tuple(grad_table.shape)} disagree")
    rows = (grad_table != 0).any(dim=1).nonzero().squeeze(1)
    values = torch.empty(rows.numel(), logits.shape[1], dtype=logits.dtype, device=logits.device)
    chunk = max(1, chunk_elements // logits.shape[1])
    for i in range(0, rows.numel(), chunk):
        r = rows[i:i + chunk]
        chosen = logits.index_select(0, r)
        p = torch.softmax(chosen, dim=1)
        s = grad_table.index_select(0, r) @ codebook.T
        g = p * (s - (p * s).sum(dim=1, keepdim=True))
        if estimator == "reinmax":
            pi1 = 0.5 * p
            pi1.scatter_add_(1, chosen.argmax(dim=1, keepdim=True), torch.full_like(pi1[:, :1], 0.5))
            g = 2.0 * pi1 * (s - (pi1 * s).sum(dim=1, keepdim=True)) - 0.5 * g
        values[i:i + chunk] = g
    return rows, values


def vq_lookup_explicit(logits: torch.Tensor, codebook: torch.Tensor, estimator: str = "ste") -> torch.Tensor:
    """The textbook forms of the straight-through lookup, whose logits' gradients `ste_gradient` computes (for tests):
    (onehot - sg(softmax) + softmax) @ codebook for "ste";
    ReinMax's pi2 - sg(pi2) + onehot, pi2 = 2 softmax(sg(ln pi1 - logits) + logits) - softmax / 2,
    pi1 = (onehot + softmax) / 2, for "reinmax"."""
    soft = torch.softmax(logits, dim=1)
    hard = torch.nn.functional.one_hot(logits.argmax(dim=1), logits.shape[1]).to(soft.dtype)
    if estimator == "ste":
        return (hard - soft.detach() + soft) @ codebook
    pi1 = torch.softmax((torch.log(0.5 * (hard + soft)) - logits).detach() + logits, dim=1)
    pi2 = 2.0 * pi1 - 0.5 * soft
    return (pi2 - pi2.detach() + hard) @ codebook


Bits = int | tuple[int, ...]
"""A codebook bitwidth b for every level, or one b per level (coarse to fine)."""


def level_bits(bits: Bits | list[int] | None, n_lods: int) -> tuple[int, ...]:
    """bits (one b, or one per level) -> one b per level; ValueError (one line) when a b is outside
    MIN_BITS..MAX_BITS (engine/limits.py: 1..16) or the list does not have one entry per level."""
    per_level = (bits,) * n_lods if bits is None or isinstance(bits, int) else tuple(int(b) for b in bits)
    if len(per_level) != n_lods:
        raise ValueError(f"--bits lists {len(per_level)} bitwidths for a grid of {n_lods} levels")
    bad = [b for b in per_level if not (b and MIN_BITS <= b <= MAX_BITS)]
    if bad:
        raise ValueError(f"--bits must be between {MIN_BITS} and {MAX_BITS}, got {bad[0]}")
    return per_level


def normal_bits(per_level: tuple[int, ...]) -> Bits:
    """The plain int when every level has the same b, else the tuple."""
    return per_level[0] if len(set(per_level)) == 1 else per_level


class FeatureGrid(nn.Module):
    """Trainable features of every feature level (LOD 0..n_lods-1) of one grid kind (dense, vq or random).

    n_corners: corners per LOD; feature_dim: F; bits: b for vq/random, one for every level or one per level
    (ignored for dense). Level k of a vq/random grid has a codebook of 2^bits[k] rows.
    """

    def __init__(self, kind: GridKind, n_corners: list[int], feature_dim: int, bits: Bits | None = None,
                 feature_std: float = 0.01, codebook_std: float = 0.1, logit_std: float = 0.01,
                 generator: torch.Generator | None = None):
        super().__init__()
        if kind not in ("dense", "vq", "random", "kmeans"):
            raise ValueError(f"unknown grid kind '{kind}' (dense, vq, random or kmeans)")
        per_level = level_bits(bits, len(n_corners)) if kind != "dense" else ()
        self.kind = kind
        self.feature_dim = feature_dim
        self.level_bits = per_level
        """b of each level (empty for dense)."""
        self.features = nn.ParameterList()
        self.codebooks = nn.ParameterList()
        self.logits = nn.ParameterList()
        for k, n in enumerate(n_corners):
            if kind == "dense":
                self.features.append(nn.Parameter(torch.randn(n, feature_dim, generator=generator) * feature_std))
                continue
            size = 1 << per_level[k]
            self.codebooks.append(nn.Parameter(torch.randn(size, feature_dim, generator=generator) * codebook_std))
            if kind == "vq":
                self.logits.append(nn.Parameter(torch.randn(n, size, generator=generator) * logit_std))
                # each corner's argmax, kept up to date by VQLogitsAdam (not saved: derived from the logits)
                self.register_buffer(f"argmax_{k}", self.logits[k].detach().argmax(dim=1).to(torch.int32),
                                     persistent=False)
            else:
                idx = torch.randint(size, (n,), generator=generator, dtype=torch.int64).to(torch.int32)
                self.register_buffer(f"indices_{k}", idx)
        self.n_lods = len(n_corners)

    @property
    def bits(self) -> Bits | None:
        """One b for every level (int), or one per level (tuple); None for dense."""
        return normal_bits(self.level_bits) if self.level_bits else None

    def indices(self, k: int) -> torch.Tensor:
        """int64 [n_corners]: the codebook row each corner uses now (argmax of the logits for vq)."""
        if self.kind == "vq":
            return getattr(self, f"argmax_{k}").long()
        return getattr(self, f"indices_{k}").long()

    @torch.no_grad()
    def refresh_indices(self) -> None:
        """vq: recompute every corner's argmax from the logits (after they changed outside VQLogitsAdam: loading,
        pruning, a rollback); other kinds: nothing to do."""
        for k, logits in enumerate(self.logits):
            getattr(self, f"argmax_{k}").copy_(logits.argmax(dim=1))

    def corner_features(self, k: int, soft: bool = False) -> torch.Tensor:
        """float [n_corners_k, F]. soft (vq only): softmax(logits) @ codebook, a relaxation that gives the logits a
        gradient through autograd."""
        if self.kind == "dense":
            return self.features[k]
        if self.kind == "vq" and soft:
            return torch.softmax(self.logits[k], dim=1) @ self.codebooks[k]
        # vq: the logits get no gradient through this (VQLogitsAdam computes theirs from this table's gradient)
        return torch.index_select(self.codebooks[k], 0, self.indices(k))

    def export_level(self, k: int) -> LevelRows:
        if self.kind == "dense":
            return LevelRows(features=self.features[k].detach().clone())
        return LevelRows(codebook=self.codebooks[k].detach().clone(), indices=self.indices(k).to(torch.int32),
                         bits=self.level_bits[k])

    # -- the training rules of this grid's kind: the trainer asks, it never branches on kinds ----------------------
    def optimizer_groups(self, grid_lr: float, codebook_lr: float) -> list[dict]:
        """Parameter groups of the main optimiser: dense features at grid_lr, codebooks at codebook_lr (the vq
        logits have an optimiser of their own, `index_optimizer`)."""
        groups = [{"params": list(self.features), "lr": grid_lr}, {"params": list(self.codebooks), "lr": codebook_lr}]
        return [g for g in groups if g["params"]]

    def index_optimizer(self, lr: float, beta1: float, estimator: str) -> torch.optim.Optimizer | None:
        """The optimiser of what chooses each corner's row (vq: VQLogitsAdam on the logits, lazy in the rows a step
        touched); None for kinds whose rows are fixed or absent, and at rate 0 (the indices stay as they are, as
        when a model's training continues: engine.train.continuation_settings)."""
        if self.kind != "vq" or lr == 0:
            return None
        from engine.optim import VQLogitsAdam  # engine.optim imports this module
        return VQLogitsAdam(list(self.logits), list(self.codebooks), lr=lr, betas=(beta1, 0.99), eps=1e-15,
                            estimator=estimator, indices=[getattr(self, f"argmax_{k}") for k in range(self.n_lods)])

    def needs_table_gradients(self, soft: bool) -> bool:
        """Whether the index optimiser steps from the gradients of the corner tables (vq's straight-through
        estimator) rather than from its parameters' own .grad (the softmax-relaxed forward)."""
        return self.kind == "vq" and not soft

    @torch.no_grad()
    def take_rows(self, old: "FeatureGrid", rows: list[torch.Tensor]) -> None:
        """After pruning: this grid's corners are old's corners `rows` (per LOD, int64 [n_corners_k] into old's)."""
        for k, r in enumerate(rows):
            if self.kind == "dense":
                self.features[k].copy_(old.features[k][r])
                continue
            self.codebooks[k].copy_(old.codebooks[k])
            if self.kind == "vq":
                self.logits[k].copy_(old.logits[k][r])
            else:
                getattr(self, f"indices_{k}").copy_(getattr(old, f"indices_{k}")[r])
        self.refresh_indices()

    @torch.no_grad()
    def load_level(self, k: int, rows: LevelRows, logit_margin: float = 4.0) -> None:
        """Level k renders like `rows` (inference form): dense copies the features; vq copies the codebook and
        makes each corner's logits pick its stored index by `logit_margin`; random and kmeans copy codebook and
        indices."""
        if self.kind == "dense":
            self.features[k].copy_(rows.features)
            return
        self.codebooks[k].copy_(rows.codebook)
        if self.kind == "vq":
            logits = self.logits[k]
            logits.mul_(0.01)
            logits.scatter_(1, rows.indices.long().to(logits.device)[:, None], logit_margin)
            getattr(self, f"argmax_{k}").copy_(logits.argmax(dim=1))
        else:
            getattr(self, f"indices_{k}").copy_(rows.indices.to(torch.int32))

    def grid_parameters(self) -> list[nn.Parameter]:
        return [*self.features, *self.codebooks, *self.logits]


def kmeans_grid_from_dense(levels: list[LevelRows], bits: int, iterations: int = 20, seed: int = 0
                           ) -> list[LevelRows]:
    """The kmVQ baseline: per level, k-means of the dense features into 2^bits codebook rows."""
    out = []
    for k, rows in enumerate(levels):
        if rows.features is None:
            raise ValueError("k-means quantisation needs a dense grid")
        codebook, assignment = kmeans(rows.features.float(), 1 << bits, iterations=iterations, seed=seed + k)
        out.append(LevelRows(codebook=codebook, indices=assignment.to(torch.int32), bits=bits))
    return out
