"""Sparse voxel octree over the unit cube [0,1]^3: occupancy per level, point descent, cell corners.

Conventions (shared by the torch code, the file format and the CUDA marcher):
- Level l has 2^l cells per axis; a cell is named by its Morton code (bits interleaved x, y, z with x the most
  significant of each triple), so cell (x, y, z) at level l+1 is child `octant = (x&1)<<2 | (y&1)<<1 | (z&1)` of cell
  (x>>1, y>>1, z>>1) and its code is `parent_code * 8 + octant`.
- `cells[l]` lists the occupied cells of level l, sorted by Morton code. Hence the children of one parent are
  contiguous in `cells[l+1]`, in octant order, and `child_start[l][i]` is where those of `cells[l][i]` begin.
- A cell's 8 corners are numbered `c = dx*4 + dy*2 + dz`; a corner at level l is named by the key
  `(cx * (R+1) + cy) * (R+1) + cz` with R = 2^l. Each level's corner table lists the corners of its occupied cells,
  sorted by key, so it follows from the occupancy alone (the file stores only the occupancy).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

POPCOUNT8 = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.int32)


@dataclass
class Octree:
    """Occupied cells of levels 0..max_level (all levels present; a prefix file may hold fewer than the model).

    cells:       per level, int64 [n_l] sorted Morton codes of the occupied cells.
    child_mask:  per level, uint8 [n_l] bit `o` set when child octant `o` is occupied (the last level: all zero).
    child_start: per level, int32 [n_l] index into cells[l+1] of the cell's first child.
    """

    cells: list[torch.Tensor]
    child_mask: list[torch.Tensor]
    child_start: list[torch.Tensor]
    dense_cache: dict = field(default_factory=dict, repr=False, compare=False)
    """Derived dense occupancy grids by level (see `occupied_dense`); filled lazily."""

    @property
    def max_level(self) -> int:
        return len(self.cells) - 1

    def to(self, device: torch.device | str) -> "Octree":
        return Octree([c.to(device) for c in self.cells], [m.to(device) for m in self.child_mask],
                      [s.to(device) for s in self.child_start],
                      {k: v.to(device) for k, v in self.dense_cache.items()})

    def truncated(self, max_level: int) -> "Octree":
        """The same octree holding only levels 0..max_level (the finest level's child masks cleared)."""
        masks = list(self.child_mask[: max_level + 1])
        masks[-1] = torch.zeros_like(masks[-1])
        return Octree(self.cells[: max_level + 1], masks, self.child_start[: max_level + 1],
                      {k: v for k, v in self.dense_cache.items() if k <= max_level})


# ---------------------------------------------------------------------------------------------------------------
# Morton codes


def _spread_bits(v: torch.Tensor) -> torch.Tensor:
    """int64 [...] with values < 2^21 -> the same bits spread to every third position."""
    v = v.to(torch.int64) & 0x1FFFFF
    v = (v | (v << 32)) & 0x1F00000000FFFF
    v = (v | (v << 16)) & 0x1F0000FF0000FF
    v = (v | (v << 8)) & 0x100F00F00F00F00F
    v = (v | (v << 4)) & 0x10C30C30C30C30C3
    v = (v | (v << 2)) & 0x1249249249249249
    return v


def _compact_bits(v: torch.Tensor) -> torch.Tensor:
    v = v & 0x1249249249249249
    v = (v | (v >> 2)) & 0x10C30C30C30C30C3
    v = (v | (v >> 4)) & 0x100F00F00F00F00F
    v = (v | (v >> 8)) & 0x1F0000FF0000FF
    v = (v | (v >> 16)) & 0x1F00000000FFFF
    v = (v | (v >> 32)) & 0x1FFFFF
    return v


def morton_encode(xyz: torch.Tensor) -> torch.Tensor:
    """int [N,3] cell coordinates -> int64 [N] Morton codes (x most significant in each bit triple)."""
    return (_spread_bits(xyz[:, 0]) << 2) | (_spread_bits(xyz[:, 1]) << 1) | _spread_bits(xyz[:, 2])


def morton_decode(codes: torch.Tensor) -> torch.Tensor:
    """int64 [N] Morton codes -> int64 [N,3] cell coordinates."""
    return torch.stack([_compact_bits(codes >> 2), _compact_bits(codes >> 1), _compact_bits(codes)], dim=1)


# ---------------------------------------------------------------------------------------------------------------
# Building


def octree_from_finest_cells(finest_codes: torch.Tensor, max_level: int) -> Octree:
    """Builds every level from the occupied cells of the finest level.

    finest_codes: int64 [n] Morton codes at level max_level (any order, duplicates allowed; may be empty).
    """
    cells = [torch.unique(finest_codes.to(torch.int64))]
    for _ in range(max_level):
        cells.insert(0, torch.unique(cells[0] >> 3))
    if cells[0].numel() == 0:
        cells[0] = torch.zeros(0, dtype=torch.int64)
    return octree_from_cells(cells)


def octree_from_cells(cells: list[torch.Tensor]) -> Octree:
    """Child masks and child starts from sorted per-level cell lists (each child's parent must be listed)."""
    masks, starts = [], []
    for level, codes in enumerate(cells):
        n = codes.numel()
        mask = torch.zeros(n, dtype=torch.int32, device=codes.device)
        if level + 1 < len(cells) and cells[level + 1].numel() > 0:
            children = cells[level + 1]
            parent = torch.searchsorted(codes, children >> 3)
            mask.index_add_(0, parent, (1 << (children & 7)).to(torch.int32))
            counts = torch.bincount(parent, minlength=n)
        else:
            counts = torch.zeros(n, dtype=torch.int64, device=codes.device)
        start = torch.cumsum(counts, 0) - counts
        masks.append(mask.to(torch.uint8))
        starts.append(start.to(torch.int32))
    return Octree(list(cells), masks, starts)


def dense_octree(max_level: int, device: torch.device | str = "cpu") -> Octree:
    """Every cell of every level occupied."""
    r = 1 << max_level
    ax = torch.arange(r, device=device)
    xyz = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    return octree_from_finest_cells(morton_encode(xyz), max_level)


def octree_from_child_masks(child_masks: list[torch.Tensor]) -> Octree:
    """Rebuilds cells and child starts from the child masks alone (the form stored in files).

    child_masks: per level, uint8 [n_l]; level 0 has one cell (the root) when the octree is not empty. The masks of
    level l must have exactly n_{l+1} bits set in total.
    """
    cells = [torch.zeros(1 if child_masks and child_masks[0].numel() else 0, dtype=torch.int64)]
    for level in range(len(child_masks) - 1):
        mask = child_masks[level].to(torch.int64)
        bits = (mask.unsqueeze(1) >> torch.arange(8)) & 1  # [n, 8]
        parent_code = cells[level].unsqueeze(1) * 8 + torch.arange(8)
        cells.append(parent_code[bits.bool()])
    return octree_from_cells(cells)


# ---------------------------------------------------------------------------------------------------------------
# Queries


def _device_constant(table: torch.Tensor, device: torch.device, cache: dict = {}) -> torch.Tensor:  # noqa: B006
    """A small constant table on `device`, copied once (a host copy per call would synchronise the GPU)."""
    key = (id(table), str(device))
    if key not in cache:
        cache[key] = table.to(device)
    return cache[key]


DENSE_LOOKUP_MAX_LEVEL = 9
"""Finest level whose occupancy `lookup_occupied` keeps as a dense bool grid (2^27 B = 128 MiB); deeper levels are
looked up by binary search in the sorted cell codes, so no level read from a file sets an allocation of 8^level."""


def occupied_dense(octree: Octree, level: int) -> torch.Tensor:
    """bool [R^3] flat dense occupancy of `level` (index (x*R + y)*R + z), cached on the octree; level must be at
    most DENSE_LOOKUP_MAX_LEVEL."""
    if level > DENSE_LOOKUP_MAX_LEVEL:
        raise ValueError(f"a dense occupancy grid of level {level} would take {8 ** level:,} bytes")
    if level not in octree.dense_cache:
        octree.dense_cache[level] = occupancy_grid(octree, level).reshape(-1)
    return octree.dense_cache[level]


def lookup_occupied(octree: Octree, points: torch.Tensor, level: int) -> torch.Tensor:
    """points float [N,3] unit cube -> bool [N]: the point's cell at `level` is occupied (one gather up to
    DENSE_LOOKUP_MAX_LEVEL, a binary search in cells[level] beyond)."""
    r = 1 << level
    ijk = (points * r).floor().long().clamp_(0, r - 1)
    if level <= DENSE_LOOKUP_MAX_LEVEL:
        return occupied_dense(octree, level)[(ijk[:, 0] * r + ijk[:, 1]) * r + ijk[:, 2]]
    cells = octree.cells[level]
    if cells.numel() == 0:
        return torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    # an occupied cell has an occupied ancestor: cull with the dense grid first, search only the survivors
    occupied = lookup_occupied(octree, points, DENSE_LOOKUP_MAX_LEVEL)
    survivors = occupied.nonzero().squeeze(1)
    codes = morton_encode(ijk[survivors])
    at = torch.searchsorted(cells, codes).clamp_(max=cells.numel() - 1)
    occupied[survivors] = cells[at] == codes
    return occupied


def descend(octree: Octree, points: torch.Tensor, level: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Walks each point from the root down to `level`.

    points: float [N,3] in the unit cube (values outside are clamped to it).
    Returns (cell_index [level+1, N] int64 index into cells[l] (0 where unoccupied),
             occupied [N] bool: the point's cell at `level` is occupied,
             depth [N] int64: the deepest level whose cell is occupied, -1 if even the root is absent).
    """
    n = points.shape[0]
    device = points.device
    popcount = _device_constant(POPCOUNT8, device)
    index = torch.zeros(n, dtype=torch.int64, device=device)
    alive = torch.full((n,), octree.cells[0].numel() > 0, dtype=torch.bool, device=device)
    depth = torch.where(alive, 0, -1).to(torch.int64)
    indices = [index]
    for l in range(level):
        if octree.child_mask[l].numel() == 0:  # an empty level: nothing below it is occupied
            index = torch.zeros_like(index)
            alive = torch.zeros_like(alive)
            indices.extend(index for _ in range(level - l))
            break
        r = 1 << (l + 1)
        ijk = (points * r).floor().long().clamp_(0, r - 1)
        octant = ((ijk[:, 0] & 1) << 2) | ((ijk[:, 1] & 1) << 1) | (ijk[:, 2] & 1)
        mask = octree.child_mask[l][index].long()
        has_child = ((mask >> octant) & 1).bool() & alive
        below = popcount[mask & ((1 << octant) - 1)].long()
        child = octree.child_start[l][index].long() + below
        index = torch.where(has_child, child, torch.zeros_like(child))
        alive = has_child
        depth = torch.where(alive, l + 1, depth)
        indices.append(index)
    return torch.stack(indices), alive, depth


def cell_coords(octree: Octree, level: int) -> torch.Tensor:
    """int64 [n_l, 3] integer coordinates of the occupied cells of `level`."""
    return morton_decode(octree.cells[level])


CORNER_OFFSETS = torch.tensor([[dx, dy, dz] for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)], dtype=torch.int64)
CORNER_OFFSETS_F = CORNER_OFFSETS.float()


def corner_keys(level: int, corner_xyz: torch.Tensor) -> torch.Tensor:
    """int64 [..., 3] corner coordinates at `level` -> int64 [...] keys (cx*(R+1) + cy)*(R+1) + cz."""
    r1 = (1 << level) + 1
    return (corner_xyz[..., 0] * r1 + corner_xyz[..., 1]) * r1 + corner_xyz[..., 2]


def _sorted_unique_(values: torch.Tensor) -> torch.Tensor:
    """int64 [m] -> its sorted distinct values; sorts `values` in place. On the CPU the sort is numpy's in-place one
    (torch.unique would hold two more copies of `values`)."""
    if values.device.type != "cpu":
        return torch.unique(values, sorted=True)
    a = values.numpy()
    a.sort()
    keep = np.empty(a.shape, dtype=bool)
    keep[:1] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return torch.from_numpy(a[keep])


def cell_corners(octree: Octree, level: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Corner table of one level.

    Returns (keys [n_corners] int64 sorted corner keys, corners_of_cell [n_cells, 8] int32 row into that table).
    Peak memory about 200 bytes per cell (every key computed from the cell's first corner, rows found by binary
    search in blocks), which the file reader's memory bound (engine/limits.py) relies on.
    """
    r1 = (1 << level) + 1
    first = corner_keys(level, cell_coords(octree, level))  # [n] key of each cell's corner (0, 0, 0)
    step = torch.tensor([(dx * r1 + dy) * r1 + dz for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)],
                        dtype=torch.int64, device=first.device)
    keys = _sorted_unique_((first.unsqueeze(1) + step).reshape(-1))
    table = torch.empty((first.numel(), 8), dtype=torch.int32, device=first.device)
    block = 1 << 17
    for start in range(0, first.numel(), block):
        table[start:start + block] = torch.searchsorted(keys, first[start:start + block].unsqueeze(1) + step)
    return keys, table


def trilinear_weights(points: torch.Tensor, level: int) -> tuple[torch.Tensor, torch.Tensor]:
    """points float [N,3] in the unit cube -> (cell xyz int64 [N,3], weights float [N,8] in corner order)."""
    r = 1 << level
    scaled = points * r
    ijk = scaled.floor().clamp(0, r - 1)
    f = scaled - ijk  # [N,3] in [0,1]
    fx, fy, fz = f[:, 0:1], f[:, 1:2], f[:, 2:3]
    off = _device_constant(CORNER_OFFSETS_F, points.device)  # [8,3]
    if off.dtype != points.dtype:
        off = off.to(points.dtype)
    w = ((off[:, 0] * fx + (1 - off[:, 0]) * (1 - fx)) * (off[:, 1] * fy + (1 - off[:, 1]) * (1 - fy))
         * (off[:, 2] * fz + (1 - off[:, 2]) * (1 - fz)))
    return ijk.long(), w


def occupancy_grid(octree: Octree, level: int) -> torch.Tensor:
    """bool [R,R,R] dense occupancy of one level (for tests and carving)."""
    r = 1 << level
    grid = torch.zeros(r, r, r, dtype=torch.bool, device=octree.cells[level].device)
    xyz = cell_coords(octree, level)
    grid[xyz[:, 0], xyz[:, 1], xyz[:, 2]] = True
    return grid
