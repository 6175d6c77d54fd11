"""RowAdam: Adam for the vq logits, whose gradient touches only the corners a step's samples reached.

The straight-through backward (engine/grids.py) gives the logits a row-sparse gradient: a sparse COO tensor over the
rows (corners) that received one. torch's dense Adam would need a dense gradient (one more copy of the logits, which
are n_corners x 2^b floats: GBs at b = 8 and 256^3) and would move every row every step on stale momentum. RowAdam
updates only the rows present in the gradient ("lazy" Adam, as instant-ngp skips rows with a zero gradient), with
bias correction by the parameter's own step count. beta1 = 0 drops the first moment and its memory (RMSprop with
bias correction). Dense gradients (the softmax-relaxed forward) update every row.
"""
from __future__ import annotations

import logging

import torch

from engine.cuda.row_adam import row_adam, row_adam_reason

log = logging.getLogger("vbnf.train")

CHUNK_ELEMENTS = 1 << 24  # rows are updated in chunks of this many elements: small temporaries next to the logits


class RowAdam(torch.optim.Optimizer):
    """params: 2-D float32 tensors [rows, K]; lr; betas (beta1 may be 0); eps. On CUDA each parameter's step is one
    kernel (engine/cuda/row_adam.cu); elsewhere, or without NVRTC, `row_adam_reference`."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.99), eps: float = 1e-15):
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"RowAdam: betas must be in [0, 1), got {betas}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})
        self._kernel_ok: dict[torch.device, bool] = {}

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    if beta1 > 0:
                        state["exp_avg"] = torch.zeros_like(p)
                state["step"] += 1
                grad = p.grad
                if grad.is_sparse:
                    grad = grad if grad.is_coalesced() else grad.coalesce()  # coalesce() sorts even when it is
                    rows, values = grad._indices()[0], grad._values()
                else:
                    rows, values = None, grad
                t = state["step"]
                update = row_adam if self._use_kernel(p.device) else row_adam_reference
                update(p, rows, values.contiguous(), state["exp_avg_sq"], state.get("exp_avg"), beta1, beta2,
                       group["lr"] / (1.0 - beta1 ** t) if beta1 > 0 else group["lr"], (1.0 - beta2 ** t) ** 0.5,
                       group["eps"])
        return None

    def _use_kernel(self, device: torch.device) -> bool:
        if device not in self._kernel_ok:
            why = row_adam_reason(device) if device.type == "cuda" else "not CUDA"
            if why and device.type == "cuda":
                log.warning("%s; RowAdam uses torch ops", why)
            self._kernel_ok[device] = why is None
        return self._kernel_ok[device]


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

