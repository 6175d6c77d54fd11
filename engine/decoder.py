"""The small MLP that turns a summed feature and a view direction into density and colour.

Fixed architecture (the CUDA marcher hard-codes it; the file stores it in its metadata):
    h      = relu(feature @ w0 + b0)                 feature [N,F], h [N,64]
    out    = h @ w1 + b1                             out [N,16]: raw density + 15 geometry features
    sigma  = exp(min(out[:,0], 15))                  density per world unit, >= 0
    h2     = relu(cat(out[:,1:], dir_enc) @ w2 + b2) dir_enc [N,15], h2 [N,64]
    rgb    = sigmoid(h2 @ w3 + b3)                   [N,3] in [0,1]
dir_enc(d) = (d, sin(pi d), cos(pi d), sin(2 pi d), cos(2 pi d)) for a unit direction d [N,3] -> [N,15].
"""
from __future__ import annotations

import math

import torch

HIDDEN = 64
GEO_DIM = 15
DIR_FREQS = 2
DIR_DIM = 3 + 6 * DIR_FREQS
MAX_LOG_DENSITY = 15.0


def decoder_shapes(feature_dim: int) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every decoder tensor, in file order."""
    return {
        "w0": (feature_dim, HIDDEN), "b0": (HIDDEN,),
        "w1": (HIDDEN, 1 + GEO_DIM), "b1": (1 + GEO_DIM,),
        "w2": (GEO_DIM + DIR_DIM, HIDDEN), "b2": (HIDDEN,),
        "w3": (HIDDEN, 3), "b3": (3,),
    }


def init_decoder(feature_dim: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Kaiming-uniform weights, zero biases (float32, CPU)."""
    params = {}
    for name, shape in decoder_shapes(feature_dim).items():
        if name.startswith("w"):
            bound = math.sqrt(6.0 / shape[0]) if name in ("w0", "w2") else math.sqrt(3.0 / shape[0])
            params[name] = (torch.rand(shape, generator=generator) * 2 - 1) * bound
        else:
            params[name] = torch.zeros(shape)
    return params


def encode_direction(dirs: torch.Tensor) -> torch.Tensor:
    """Unit directions [N,3] -> [N,15] (d, then sin/cos at frequencies pi and 2 pi)."""
    parts = [dirs]
    for k in range(DIR_FREQS):
        scaled = dirs * (math.pi * (1 << k))
        parts += [torch.sin(scaled), torch.cos(scaled)]
    return torch.cat(parts, dim=-1)


def decode_density(params: dict[str, torch.Tensor], features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """features [N,F] -> (sigma [N] per world unit, geometry features [N,15])."""
    h = torch.relu(features @ params["w0"] + params["b0"])
    out = h @ params["w1"] + params["b1"]
    sigma = torch.exp(out[:, 0].clamp(max=MAX_LOG_DENSITY))
    return sigma, out[:, 1:]


def decode(params: dict[str, torch.Tensor], features: torch.Tensor, dirs: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """features [N,F], unit view directions [N,3] -> (sigma [N] per world unit, rgb [N,3] in [0,1])."""
    sigma, geo = decode_density(params, features)
    h2 = torch.relu(torch.cat([geo, encode_direction(dirs)], dim=-1) @ params["w2"] + params["b2"])
    rgb = torch.sigmoid(h2 @ params["w3"] + params["b3"])
    return sigma, rgb
