"""Where the octree has cells: carving from the training images' alpha masks, and pruning during training."""
from __future__ import annotations

import math
import warnings
from dataclasses import replace

import torch

from engine.cameras import Cameras, rays_from_pixels
from engine.field import NeuralField
from engine.octree import (Octree, cell_coords, cell_corners, dense_octree, descend, morton_decode,
                           octree_from_finest_cells)
from engine.render import render_rays

DENSE_LIMIT_LEVEL = 7  # a dense octree above this level would hold > 2M finest cells


def _project(points: torch.Tensor, cams: Cameras) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """World points [M,3] -> pixel x, y [C,M] and depth [C,M] (positive in front) for every camera (pinhole)."""
    rot = cams.c2w[:, :3, :3]  # [C,3,3]
    pos = cams.c2w[:, :3, 3]  # [C,3]
    local = torch.einsum("cji,cmj->cmi", rot, points[None] - pos[:, None])  # R^T (x - t)
    depth = -local[..., 2]
    z = depth.clamp_min(1e-6)
    px = cams.fx * local[..., 0] / z + cams.cx
    py = -cams.fy * local[..., 1] / z + cams.cy
    return px, py, depth


def carve_octree(cams: Cameras, alphas: torch.Tensor, center: torch.Tensor, half_size: float, max_level: int,
                 start_level: int = 3, alpha_threshold: float = 0.05, camera_chunk: int = 16) -> Octree:
    """Visual hull: a cell survives unless some camera sees only background (alpha below the threshold) in a
    disc around its projection wide enough to cover the whole cell. Coarse to fine, so only survivors subdivide.

    cams: N cameras (pinhole part used); alphas: float [N,H,W]; center [3], half_size: the scene cube (world).
    """
    device = alphas.device
    cams_c2w = cams.c2w.to(device)
    depth_min = _min_depth(cams_c2w, center.to(device), half_size)
    start_level = min(start_level, max_level)
    codes = dense_octree(start_level, device).cells[start_level]
    for level in range(start_level, max_level + 1):
        cell = 2.0 * half_size / (1 << level)
        radius_px = int(math.ceil(max(cams.fx, cams.fy) * cell * math.sqrt(3) / 2 / depth_min)) + 1
        pooled = dilate(alphas, radius_px)
        centers = (morton_decode(codes).float() + 0.5) * cell - half_size + center.to(device)
        keep = torch.ones(codes.shape[0], dtype=torch.bool, device=device)
        for c0 in range(0, cams_c2w.shape[0], camera_chunk):
            sub = Cameras(cams_c2w[c0:c0 + camera_chunk], cams.fx, cams.fy, cams.cx, cams.cy, cams.width,
                          cams.height, cams.distortion)
            px, py, depth = _project(centers, sub)
            ix, iy = px.floor().long(), py.floor().long()
            inside = (depth > 0) & (ix >= 0) & (iy >= 0) & (ix < cams.width) & (iy < cams.height)
            a = pooled[c0:c0 + camera_chunk]
            cam_idx = torch.arange(a.shape[0], device=device)[:, None].expand_as(ix)
            seen = a[cam_idx, iy.clamp(0, cams.height - 1), ix.clamp(0, cams.width - 1)]
            keep &= ~(inside & (seen < alpha_threshold)).any(dim=0)
        codes = codes[keep]
        if level < max_level:
            codes = (codes[:, None] * 8 + torch.arange(8, device=device)).reshape(-1)
    return octree_from_finest_cells(codes.cpu(), max_level)


def dilate(images: torch.Tensor, radius: int) -> torch.Tensor:
    """Max over a (2r+1)^2 square around each pixel: float [N,H,W] -> [N,H,W], O(log r) passes (not O(r^2))."""
    out = images
    for dim in (1, 2):
        out = _sliding_max(out, 2 * radius + 1, dim)
    return out


def _sliding_max(x: torch.Tensor, window: int, dim: int) -> torch.Tensor:
    """Centred sliding maximum of odd `window` along `dim` (zero padding: values are >= 0)."""
    n = x.shape[dim]
    pad = [0, 0] * (x.ndim - dim - 1) + [window // 2, window // 2]
    m = torch.nn.functional.pad(x, pad)
    width = 1
    while 2 * width <= window:  # m[i] = max of x[i .. i + width - 1] (padded), doubling the width each pass
        m = torch.maximum(m.narrow(dim, 0, m.shape[dim] - width), m.narrow(dim, width, m.shape[dim] - width))
        width *= 2
    return torch.maximum(m.narrow(dim, 0, n), m.narrow(dim, window - width, n))


def _min_depth(c2w: torch.Tensor, center: torch.Tensor, half_size: float) -> float:
    distance = (c2w[:, :3, 3] - center).norm(dim=1).min().item()
    return max(distance - half_size * math.sqrt(3), 0.05 * half_size)


def initial_octree(cams: Cameras, alphas: torch.Tensor | None, center: torch.Tensor, half_size: float,
                   max_level: int, device: torch.device | str = "cpu") -> Octree:
    """Carved from the alpha masks (on `device`) when there are any, else dense (with a warning when large)."""
    if alphas is not None:
        return carve_octree(cams, alphas.to(device), center, half_size, max_level)
    if max_level > DENSE_LIMIT_LEVEL:
        warnings.warn(f"no alpha masks to carve with: a dense octree at level {max_level} is too large; "
                      f"pruning will have to remove empty cells (consider --max-level {DENSE_LIMIT_LEVEL})")
    return dense_octree(max_level)


@torch.no_grad()
def finest_cell_density(field: NeuralField, samples_per_cell: int = 8, chunk: int = 1 << 18,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Max density (per world unit) over random points in each finest occupied cell, at full LOD: float [n_cells]."""
    level = field.octree.max_level
    xyz = cell_coords(field.octree, level).float()
    n = xyz.shape[0]
    fn = field.field_fn(field.n_lods - 1)
    out = torch.zeros(n, device=xyz.device)
    dirs_z = torch.tensor([0.0, 0.0, 1.0], device=xyz.device)
    for i in range(0, n, max(1, chunk // samples_per_cell)):
        base = xyz[i:i + chunk // samples_per_cell]
        jitter = torch.rand(base.shape[0], samples_per_cell, 3, generator=generator).to(xyz.device)
        pts = ((base[:, None] + jitter) / (1 << level)).reshape(-1, 3)
        cell_index, _, _ = descend(field.octree, pts, level)
        sigma, _ = fn(pts, cell_index, dirs_z.expand(pts.shape[0], 3))
        out[i:i + base.shape[0]] = sigma.reshape(-1, samples_per_cell).amax(dim=1)
    return out


def cells_to_keep(field: NeuralField, step: float, alpha_threshold: float = 0.005) -> torch.Tensor:
    """bool [n_finest_cells]: the finest cells whose largest alpha over a ray step (1 - exp(-sigma * step)) reaches
    the threshold; pruning removes the others."""
    sigma = finest_cell_density(field)
    return (1.0 - torch.exp(-sigma * step)) >= alpha_threshold


@torch.no_grad()
def finest_cell_visibility(field: NeuralField, cams: Cameras, n_rays: int, step: float, seed: int = 0,
                           chunk: int = 1 << 14) -> torch.Tensor:
    """float [n_finest_cells]: the largest rendering weight (transmittance x alpha) that any of `n_rays` random
    pixels of the `cams` views (all of them when there are fewer) gives a sample in each finest cell, at full LOD.
    Cells behind opaque surfaces (a solid object's interior) get ~0: no view of these cameras shows them."""
    device = field.scene_center.device
    n_cams, height, width = cams.c2w.shape[0], cams.height, cams.width
    total = n_cams * height * width
    generator = torch.Generator(device="cpu").manual_seed(seed)
    if total <= n_rays:
        pixel = torch.arange(total)
    else:
        pixel = torch.randint(total, (n_rays,), generator=generator)
    cams = replace(cams, c2w=cams.c2w.to(device))
    level = field.octree.max_level
    fn = field.field_fn(field.n_lods - 1)
    background = torch.ones(3, device=device)
    best = torch.zeros(field.octree.cells[level].numel(), device=device)
    for i in range(0, pixel.numel(), chunk):
        p = pixel[i:i + chunk].to(device)
        cam, rest = p // (height * width), p % (height * width)
        origins, dirs = rays_from_pixels(cams, cam, (rest % width).float() + 0.5, (rest // width).float() + 0.5)
        out = render_rays(fn, field.octree, level, field.scene_center, field.scene_half_size, step, origins, dirs,
                          background, extras=("cell_weight",))
        best = torch.maximum(best, out["cell_weight"])
    return best


def prune_field(field: NeuralField, keep: torch.Tensor) -> NeuralField:
    """A new field (same device) on the finest cells where `keep` (from cells_to_keep) is True, every surviving
    corner keeping its parameters."""
    octree = octree_from_finest_cells(field.octree.cells[-1][keep].cpu(), field.octree.max_level)
    return reshaped_field(field, octree)


def corner_rows(old: Octree, new: Octree, base_level: int, n_lods: int, device: torch.device | str
                ) -> list[torch.Tensor]:
    """Per LOD, int64 [n_corners_k of new]: the row of each of `new`'s corners in `old`'s corner table (`new` is a
    sub-octree of `old`)."""
    rows = []
    for k in range(n_lods):
        level = base_level + k
        old_keys = cell_corners(old.to("cpu"), level)[0]
        new_keys = cell_corners(new.to("cpu"), level)[0]
        rows.append(torch.searchsorted(old_keys, new_keys).to(device))
    return rows


def reshaped_field(field: NeuralField, octree: Octree) -> NeuralField:
    """A NeuralField on a sub-octree of `field`'s, whose corners carry the old corners' parameters."""
    device = field.scene_center.device
    new = NeuralField(octree, field.base_level, field.kind, field.grid.feature_dim, field.grid.bits,
                      field.scene_center.cpu(), field.scene_half_size).to(device)
    with torch.no_grad():
        new.grid.take_rows(field.grid, corner_rows(field.octree, octree, field.base_level, field.n_lods, device))
        for name, value in field.decoder.items():
            new.decoder[name].copy_(value)
    return new
