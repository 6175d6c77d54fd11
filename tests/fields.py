"""Small octrees shared by the tests that build fields without training."""
from __future__ import annotations

import torch

from engine.octree import Octree, morton_encode, octree_from_finest_cells


def sphere_shell_octree(level: int, radius: float = 0.3) -> Octree:
    """Cells of `level` within one cell of a sphere's surface (a sparse, shell-like octree)."""
    r = 1 << level
    ax = torch.arange(r)
    xyz = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    dist = ((xyz.float() + 0.5) / r - 0.5).norm(dim=1)
    return octree_from_finest_cells(morton_encode(xyz[(dist - radius).abs() < 1.0 / r]), level)
