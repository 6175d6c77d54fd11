"""Feature grids: where a level's per-corner features come from. One interface for every kind:

    grid.corner_features(k) -> float [n_corners_k, F]   features of LOD k's corners, in corner-table order
    grid.export_level(k)    -> LevelRows                 what inference (and the file) keeps of level k

Kinds:
- dense:  float features per corner (the uncompressed NGLOD-NeRF baseline).
- vq:     VQAD. A codebook [2^b, F] and 2^b logits per corner; forward uses the codebook row of each corner's argmax,
          backward the softmax gradient (straight-through estimator), through `vq_lookup` which never forms an
          [N, 8, 2^b, F] tensor: its memory is [n_corners, 2^b].
- random: fixed random indices into a learned codebook (the hash-like baseline).
- kmeans: post-hoc k-means of a trained dense grid (see `kmeans_grid_from_dense`); inference-only, no training form.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import warnings

import torch
from torch import nn

from engine.quantize import kmeans

GridKind = Literal["dense", "vq", "random", "kmeans"]
# The STE builds its sparse gradient with check_invariants=False (its rows are unique and sorted); torch 2.11 still
# warns once that checks are off.
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")

CODEBOOK_STD = 0.1
"""Standard deviation of a new codebook's entries (vq, random); bench/train_quality.py --codebook-std sets it."""


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


class _VQLookup(torch.autograd.Function):
    """Straight-through codebook lookup: logits [M,K], codebook [K,F] -> codebook[argmax(logits)] [M,F]."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, codebook: torch.Tensor, reinmax: bool) -> torch.Tensor:
        index = logits.argmax(dim=1)
        ctx.save_for_backward(logits, codebook, index)
        ctx.reinmax = reinmax
        return torch.index_select(codebook, 0, index)

    @staticmethod
    def backward(ctx, v_features: torch.Tensor):
        logits, codebook, index = ctx.saved_tensors
        v_logits = v_codebook = None
        if ctx.needs_input_grad[0]:
            # Only corners that received a gradient: p * (s - <p, s>) with s = v @ codebook^T, in chunks of rows so
            # that the temporaries stay small next to the logits (b = 8 at 256^3: logits are GBs). The gradient is
            # a sparse COO tensor over those rows (engine/optim.py's RowAdam updates them alone).
            rows = (v_features != 0).any(dim=1).nonzero().squeeze(1)
            values = torch.empty(rows.numel(), logits.shape[1], dtype=logits.dtype, device=logits.device)
            chunk = max(1, (1 << 24) // logits.shape[1])
            for i in range(0, rows.numel(), chunk):
                r = rows[i:i + chunk]
                p = torch.softmax(logits.index_select(0, r), dim=1)
                s = v_features.index_select(0, r) @ codebook.T
                g = p * (s - (p * s).sum(dim=1, keepdim=True))
                if ctx.reinmax:  # 2 J(pi1) s - J(p) s / 2 with pi1 = (onehot + p) / 2, J(q) = diag(q) - q q^T
                    pi1 = 0.5 * p
                    pi1.scatter_add_(1, index.index_select(0, r)[:, None], torch.full_like(pi1[:, :1], 0.5))
                    g = 2.0 * pi1 * (s - (pi1 * s).sum(dim=1, keepdim=True)) - 0.5 * g
                values[i:i + chunk] = g
            v_logits = torch.sparse_coo_tensor(rows[None], values, logits.shape, is_coalesced=True,
                                                check_invariants=False)
        if ctx.needs_input_grad[1]:
            v_codebook = torch.zeros_like(codebook).index_add_(0, index, v_features)
        return v_logits, v_codebook, None


VQ_ESTIMATOR = "ste"
"""The logits' gradient estimator: "ste" (straight-through: the softmax's Jacobian) or "reinmax" (Liu et al. 2023,
second-order accurate). bench/train_quality.py --estimator sets it."""


def vq_lookup(logits: torch.Tensor, codebook: torch.Tensor, estimator: str | None = None) -> torch.Tensor:
    """Straight-through estimator: forward codebook[argmax(logits)], backward the softmax gradient.

    logits: float [M, 2^b]; codebook: float [2^b, F] -> float [M, F]. The logits' gradient is sparse (the rows that
    received one), so its memory is O(touched rows * 2^b).
    """
    if logits.ndim != 2 or codebook.ndim != 2 or logits.shape[1] != codebook.shape[0]:
        raise ValueError(f"vq_lookup: logits {tuple(logits.shape)} and codebook {tuple(codebook.shape)} disagree")
    estimator = estimator or VQ_ESTIMATOR
    if estimator not in ("ste", "reinmax"):
        raise ValueError(f"vq_lookup: unknown estimator '{estimator}' (ste or reinmax)")
    return _VQLookup.apply(logits.contiguous(), codebook.contiguous(), estimator == "reinmax")


def vq_lookup_explicit(logits: torch.Tensor, codebook: torch.Tensor, estimator: str = "ste") -> torch.Tensor:
    """The textbook forms of `vq_lookup` (for tests): (onehot - sg(softmax) + softmax) @ codebook for "ste";
    ReinMax's pi2 - sg(pi2) + onehot, pi2 = 2 softmax(sg(ln pi1 - logits) + logits) - softmax / 2,
    pi1 = (onehot + softmax) / 2, for "reinmax"."""
    soft = torch.softmax(logits, dim=1)
    hard = torch.nn.functional.one_hot(logits.argmax(dim=1), logits.shape[1]).to(soft.dtype)
    if estimator == "ste":
        return (hard - soft.detach() + soft) @ codebook
    pi1 = torch.softmax((torch.log(0.5 * (hard + soft)) - logits).detach() + logits, dim=1)
    pi2 = 2.0 * pi1 - 0.5 * soft
    return (pi2 - pi2.detach() + hard) @ codebook


class FeatureGrid(nn.Module):
    """Trainable features of every feature level (LOD 0..n_lods-1) of one grid kind (dense, vq or random).

    n_corners: corners per LOD; feature_dim: F; bits: b for vq/random (ignored for dense).
    """

    def __init__(self, kind: GridKind, n_corners: list[int], feature_dim: int, bits: int | None = None,
                 feature_std: float = 0.01, codebook_std: float | None = None, logit_std: float = 0.01,
                 generator: torch.Generator | None = None):
        super().__init__()
        if kind not in ("dense", "vq", "random"):
            raise ValueError(f"grid kind '{kind}' has no training form (use dense, vq or random)")
        if kind != "dense" and not (bits and 1 <= bits <= 16):
            raise ValueError(f"--bits must be between 1 and 16 for a {kind} grid, got {bits}")
        codebook_std = CODEBOOK_STD if codebook_std is None else codebook_std
        self.kind = kind
        self.feature_dim = feature_dim
        self.bits = bits if kind != "dense" else None
        self.features = nn.ParameterList()
        self.codebooks = nn.ParameterList()
        self.logits = nn.ParameterList()
        for k, n in enumerate(n_corners):
            if kind == "dense":
                self.features.append(nn.Parameter(torch.randn(n, feature_dim, generator=generator) * feature_std))
                continue
            size = 1 << bits
            self.codebooks.append(nn.Parameter(torch.randn(size, feature_dim, generator=generator) * codebook_std))
            if kind == "vq":
                self.logits.append(nn.Parameter(torch.randn(n, size, generator=generator) * logit_std))
            else:
                idx = torch.randint(size, (n,), generator=generator, dtype=torch.int64).to(torch.int32)
                self.register_buffer(f"indices_{k}", idx)
        self.n_lods = len(n_corners)

    def indices(self, k: int) -> torch.Tensor:
        """int64 [n_corners]: the codebook row each corner uses now (argmax of the logits for vq)."""
        if self.kind == "vq":
            return self.logits[k].argmax(dim=1)
        return getattr(self, f"indices_{k}").long()

    def corner_features(self, k: int, soft: bool = False) -> torch.Tensor:
        """float [n_corners_k, F]. soft (vq only): softmax(logits) @ codebook, the relaxation used early in training."""
        if self.kind == "dense":
            return self.features[k]
        if self.kind == "vq":
            if soft:
                return torch.softmax(self.logits[k], dim=1) @ self.codebooks[k]
            return vq_lookup(self.logits[k], self.codebooks[k])
        return torch.index_select(self.codebooks[k], 0, self.indices(k))

    def export_level(self, k: int) -> LevelRows:
        if self.kind == "dense":
            return LevelRows(features=self.features[k].detach().clone())
        return LevelRows(codebook=self.codebooks[k].detach().clone(), indices=self.indices(k).to(torch.int32),
                         bits=self.bits)

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
