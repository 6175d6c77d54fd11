"""VQLogitsAdam: Adam for the vq logits, fed by the straight-through estimator and lazy in the rows it moves.

The logits are not in the autograd graph (engine/grids.py): a step's backward leaves the gradient of each level's
corner table, [n_corners, F] (the trainer retains it), and `step(table_gradients)` turns it into the logits'
straight-through gradient (`engine.grids.ste_gradient`) and applies Adam to the rows (corners) that received one. Untouched rows keep their
logits and moments ("lazy" Adam, as instant-ngp skips rows with a zero gradient), with bias correction by the
parameter's own step count. beta1 = 0 drops the first moment and its memory (RMSprop with bias correction). The
logits are n_corners x 2^b floats (GBs at b = 8 and 256^3), so nothing of their size is formed besides the moments.

On CUDA each level's step is one kernel (engine/cuda/vq_adam.cu) that computes the gradient and the update in one pass
over the touched rows; elsewhere, or without NVRTC, `vq_adam_reference` (torch ops, the kernel's reference). The
softmax-relaxed forward (FeatureGrid.corner_features(soft=True)) puts a dense .grad on the logits instead, which
updates every row through `row_adam_reference`.
"""
from __future__ import annotations

import logging

import torch

from engine import grids
from engine.cuda.vq_adam import vq_adam, vq_adam_reason

log = logging.getLogger("vbnf.train")

CHUNK_ELEMENTS = 1 << 24  # rows are updated in chunks of this many elements: small temporaries next to the logits


class VQLogitsAdam(torch.optim.Optimizer):
    """Adam on a vq grid's logits (per level float32 [n_corners, 2^b]), whose codebooks (per level [2^b, F]) the
    straight-through gradient needs; lr; betas (beta1 may be 0); eps; estimator: "ste" or "reinmax" (None:
    engine.grids.VQ_ESTIMATOR when stepping).

    Step it before the codebooks' optimiser: the gradient is computed with the codebooks the forward used."""

    def __init__(self, logits: list[torch.Tensor], codebooks: list[torch.Tensor], lr: float,
                 betas: tuple[float, float] = (0.0, 0.99), eps: float = 1e-15, estimator: str | None = None):
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"VQLogitsAdam: betas must be in [0, 1), got {betas}")
        super().__init__(list(logits), {"lr": lr, "betas": tuple(betas), "eps": eps})
        self.codebooks = list(codebooks)
        self.estimator = estimator
        self._level = {id(p): k for k, p in enumerate(logits)}
        self._kernel_ok: dict[torch.device, bool] = {}

    @torch.no_grad()
    def step(self, table_gradients: list[torch.Tensor | None] | None = None):
        """table_gradients: per level (from level 0; a shorter list or None means none for the rest), float
        [n_corners, F], the gradient of the loss w.r.t. the corner table the forward used, or None where that
        level took no part. Levels whose logits have a .grad (the softmax-relaxed forward) use that instead."""
        estimator = self.estimator or grids.VQ_ESTIMATOR
        table_gradients = table_gradients or []
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                k = self._level[id(p)]
                grad_table = table_gradients[k] if k < len(table_gradients) else None
                if p.grad is None and grad_table is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    if beta1 > 0:
                        state["exp_avg"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                step_size = group["lr"] / (1.0 - beta1 ** t) if beta1 > 0 else group["lr"]
                moments = (state["exp_avg_sq"], state.get("exp_avg"), beta1, beta2, step_size,
                           (1.0 - beta2 ** t) ** 0.5, group["eps"])
                codebook = self.codebooks[k].detach()
                if p.grad is not None:  # softmax-relaxed forward: a dense gradient of every row
                    row_adam_reference(p, None, p.grad, *moments)
                elif self._use_kernel(p.device, codebook.shape[1]):
                    vq_adam(p, codebook.contiguous(), grad_table.contiguous(), moments[0], moments[1], estimator,
                            *moments[2:])
                else:
                    vq_adam_reference(p, codebook, grad_table, estimator, *moments)
        return None

    def _use_kernel(self, device: torch.device, feature_dim: int) -> bool:
        if device not in self._kernel_ok:
            why = vq_adam_reason(device, feature_dim) if device.type == "cuda" else "not CUDA"
            if why and device.type == "cuda":
                log.warning("%s; the vq logits are updated with torch ops", why)
            self._kernel_ok[device] = why is None
        return self._kernel_ok[device]


def vq_adam_reference(logits: torch.Tensor, codebook: torch.Tensor, grad_table: torch.Tensor, estimator: str,
                      exp_avg_sq: torch.Tensor, exp_avg: torch.Tensor | None, beta1: float, beta2: float,
                      step_size: float, root_correction: float, eps: float) -> None:
    """One step, in place, of the logits [N, K] (and their moments) whose corners have a non-zero row in grad_table
    [N, F]: their straight-through gradient (`engine.grids.ste_gradient` with the codebook [K, F]), then
    `row_adam_reference` on those rows. The torch twin of engine/cuda/vq_adam.cu."""
    rows, grad = grids.ste_gradient(logits, codebook, grad_table, estimator, CHUNK_ELEMENTS)
    row_adam_reference(logits, rows, grad, exp_avg_sq, exp_avg, beta1, beta2, step_size, root_correction, eps)


def row_adam_reference(param: torch.Tensor, rows: torch.Tensor | None, grad: torch.Tensor, exp_avg_sq: torch.Tensor,
                       exp_avg: torch.Tensor | None, beta1: float, beta2: float, step_size: float,
                       root_correction: float, eps: float) -> None:
    """One Adam step, in place, on param[rows] (every row when rows is None) with gradient grad [len(rows), K]:
    v = b2 v + (1 - b2) g^2; m = b1 m + (1 - b1) g (m = g without exp_avg);
    param -= step_size * m / (sqrt(v) / root_correction + eps). In row chunks (small temporaries)."""
    n = grad.shape[0]
    chunk = max(1, CHUNK_ELEMENTS // max(1, grad.shape[1]))
    for i in range(0, n, chunk):
        g = grad[i:i + chunk]
        if rows is None:  # dense: update slices in place
            r = slice(i, i + g.shape[0])
            v = exp_avg_sq[r].mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
            m = g if exp_avg is None else exp_avg[r].mul_(beta1).add_(g, alpha=1.0 - beta1)
            param[r] -= step_size * (m / v.sqrt().div_(root_correction).add_(eps))
            continue
        # row-sparse: gather, update, scatter back (rows are unique; index_copy_, not t[rows] = ..., which sorts)
        r = rows[i:i + chunk]
        v = exp_avg_sq.index_select(0, r).mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        exp_avg_sq.index_copy_(0, r, v)
        if exp_avg is None:
            m = g
        else:
            m = exp_avg.index_select(0, r).mul_(beta1).add_(g, alpha=1.0 - beta1)
            exp_avg.index_copy_(0, r, m)
        update = v.sqrt_().div_(root_correction).add_(eps)
        torch.div(m, update, out=update)
        param.index_add_(0, r, update, alpha=-step_size)
