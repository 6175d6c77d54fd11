"""VQLogitsAdam: Adam for the vq logits, fed by the straight-through estimator and lazy in the rows it moves.

The logits are not in the autograd graph (engine/grids.py): a step's backward leaves the gradient of each level's
corner table, [n_corners, F] (the trainer retains it), and `step(table_gradients)` turns it into the logits'
straight-through gradient (`engine.grids.ste_gradient`) and applies Adam to the rows (corners) that received one. Untouched rows keep their
logits and moments ("lazy" Adam, as instant-ngp skips rows with a zero gradient), with bias correction by the
parameter's own step count. beta1 = 0 drops the first moment and its memory (RMSprop with bias correction). The
logits are n_corners x 2^b floats (GBs at b = 8 and 256^3), so nothing of their size is formed besides the moments.

On CUDA each level's step is one kernel (`vq_adam`, engine/cuda/vq_adam.cu) that computes the gradient and the
update in one pass over the touched rows; elsewhere, or without NVRTC, its torch twin `vq_adam_torch` (both in
engine/cuda/vq_adam.py). The softmax-relaxed forward (FeatureGrid.corner_features(soft=True)) puts a dense .grad on
the logits instead, which updates every row through `row_adam`.
"""
from __future__ import annotations

import logging

import torch

from engine import grids
from engine.cuda.vq_adam import row_adam, vq_adam, vq_adam_reason, vq_adam_torch

log = logging.getLogger("vbnf.train")


class VQLogitsAdam(torch.optim.Optimizer):
    """Adam on a vq grid's logits (per level float32 [n_corners, 2^b]), whose codebooks (per level [2^b, F]) the
    straight-through gradient needs; lr; betas (beta1 may be 0); eps; estimator: "ste" or "reinmax"
    (engine.grids.ESTIMATORS).

    Step it before the codebooks' optimiser: the gradient is computed with the codebooks the forward used."""

    def __init__(self, logits: list[torch.Tensor], codebooks: list[torch.Tensor], lr: float,
                 betas: tuple[float, float] = (0.0, 0.99), eps: float = 1e-15, estimator: str = "ste",
                 indices: list[torch.Tensor] | None = None):
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"VQLogitsAdam: betas must be in [0, 1), got {betas}")
        if estimator not in grids.ESTIMATORS:
            raise ValueError(f"VQLogitsAdam: unknown estimator '{estimator}' ({', '.join(grids.ESTIMATORS)})")
        super().__init__(list(logits), {"lr": lr, "betas": tuple(betas), "eps": eps})
        self.codebooks = list(codebooks)
        self.indices = list(indices) if indices is not None else None
        """Per level int32 [n_corners] or None: each row's argmax, kept up to date by every step (the grid's index
        table, so that the forward needs no argmax over every corner)."""
        self.estimator = estimator
        self._level = {id(p): k for k, p in enumerate(logits)}
        self._kernel_ok: dict[torch.device, bool] = {}

    @torch.no_grad()
    def step(self, table_gradients: list[torch.Tensor | None] | None = None):
        """table_gradients: per level (from level 0; a shorter list or None means none for the rest), float
        [n_corners, F], the gradient of the loss w.r.t. the corner table the forward used, or None where that
        level took no part. Levels whose logits have a .grad (the softmax-relaxed forward) use that instead."""
        estimator = self.estimator
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
                index = self.indices[k] if self.indices is not None else None
                if p.grad is not None:  # softmax-relaxed forward: a dense gradient of every row
                    row_adam(p, None, p.grad, *moments)
                    if index is not None:
                        index.copy_(p.argmax(dim=1))
                elif self._use_kernel(p.device, codebook.shape[1]):
                    vq_adam(p, codebook.contiguous(), grad_table.contiguous(), moments[0], moments[1], estimator,
                            *moments[2:], indices=index)
                else:
                    vq_adam_torch(p, codebook, grad_table, moments[0], moments[1], estimator, *moments[2:],
                                  indices=index)
        return None

    def _use_kernel(self, device: torch.device, feature_dim: int) -> bool:
        if device not in self._kernel_ok:
            why = vq_adam_reason(device, feature_dim) if device.type == "cuda" else "not CUDA"
            if why and device.type == "cuda":
                log.warning("%s; the vq logits are updated with torch ops", why)
            self._kernel_ok[device] = why is None
        return self._kernel_ok[device]
