"""Small octrees shared by the tests that build fields without training."""
from __future__ import annotations

from pathlib import Path

import torch

from engine.field import NeuralField
from engine.fileformat import save_model
from engine.octree import Octree, morton_encode, octree_from_finest_cells


def sphere_shell_octree(level: int, radius: float = 0.3) -> Octree:
    """Cells of `level` within one cell of a sphere's surface (a sparse, shell-like octree)."""
    r = 1 << level
    ax = torch.arange(r)
    xyz = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    dist = ((xyz.float() + 0.5) / r - 0.5).norm(dim=1)
    return octree_from_finest_cells(morton_encode(xyz[(dist - radius).abs() < 1.0 / r]), level)


def make_tiny_model(path: Path, bits: int = 4, max_level: int = 4, base_level: int = 1, seed: int = 1,
                    metadata: dict | None = None) -> Path:
    """A small vq field saved at `path`, its decoder biased to show an opaque, colourful shell (radius 0.28 of the
    unit cube); every LOD looks different."""
    field = NeuralField(sphere_shell_octree(max_level, 0.28), base_level, "vq", feature_dim=8, bits=bits, seed=seed)
    with torch.no_grad():
        field.decoder["b1"][0] = 3.0  # density e^3 per world unit inside occupied cells
        for codebook in field.grid.codebooks:
            codebook.mul_(20.0)  # strong features: colours vary across corners and LODs
    save_model(path, field.freeze(), metadata or {})
    return path
