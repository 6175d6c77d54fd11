"""Procedural demo scene, rendered analytically, written as a Blender/NeRF-Synthetic data set.

Layer: engine (imports engine.cameras and engine.errors only). No downloaded data: tests and the
bundled default model are trained on what `make_scene` writes.

The "toys" scene (world units, +z up, everything within radius 1.2 of the origin, i.e. well inside
the Blender cube [-1.5, 1.5]^3): a round pedestal with a fine checkered top and striped side, a
red/cream checkered ball, an upright rainbow torus with stripes around its tube, a box with diagonal
orange stripes carrying a banded gold ball, and a ring of small coloured beads on the pedestal's rim.
Shading is view-independent (Lambert + hemispheric ambient from one fixed light, with hard shadows),
so a radiance field without view dependence can fit it exactly. Rays are intersected analytically
(spheres, box, cylinder) or by sphere tracing (torus); each pixel averages a 2x2 stratified, jittered
set of samples, colour and alpha alike.

The "lattice" scene (the bundled default model's) is "toys" plus thin parts that only fine levels of detail
resolve: a lattice tower of 20 striped rods (0.045 world units thick, about one cell at octree level 6) in the
pedestal's empty quadrant, and a thin striped ring (Saturn-like, tilted 20 degrees) around the gold ball.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import torch
from PIL import Image

from engine.cameras import Cameras, look_at, make_cameras, orbit_position, rays_from_pixels
from engine.errors import VbnfError

SCENE_NAMES = ("toys", "lattice")
CAMERA_RADIUS = 4.0  # world units from the origin
CAMERA_ANGLE_X = 0.6911112070083618  # radians, horizontal field of view (NeRF-Synthetic's)
SAMPLES_PER_PIXEL = 4  # 2x2 stratified jitter
SCENE_RADIUS = 1.2  # every surface lies within this distance of the origin
TEST_ELEVATION_DEG = 30.0
TRAIN_ELEVATION_RANGE_DEG = (-20.0, 80.0)

_INF = float("inf")
_T_MIN = 1e-4  # world units: nearest accepted hit, avoids self-intersection of shadow rays
_TORUS_STEPS = 64
_TORUS_EPS = 2e-4

# Geometry of "toys", in model units; world = model * _SCALE (the farthest point, the pedestal's bottom
# rim, is at 1.052 model units = 1.18 world units from the origin).
_SCALE = 1.12
_PED_RADIUS = 0.85
_PED_BOTTOM = -0.62
_PED_TOP = -0.45
_BALL = (-0.30, -0.30, _PED_TOP + 0.42, 0.42)
_BOX_CENTER = (0.33, -0.33, _PED_TOP + 0.16)
_BOX_HALF = (0.16, 0.16, 0.16)
_BOX_YAW_DEG = 25.0
_GOLD = (0.33, -0.33, _PED_TOP + 0.32 + 0.10, 0.10)
_TORUS_CENTER = (0.30, 0.30, _PED_TOP + 0.38 + 0.13)
_TORUS_R = 0.38  # major radius
_TORUS_TUBE = 0.13  # minor radius
_BEADS = 16
_BEAD_RADIUS = 0.055
_BEAD_RING = 0.76
_LIGHT_DIR = (0.45, -0.35, 0.82)  # towards the light, normalised below
# "lattice" only: a tower of rods (square footprint, three storeys, one diagonal per face) and a thin ring.
_TOWER_XY = (-0.36, 0.36)
_TOWER_HALF = 0.17  # half the footprint's side
_TOWER_HEIGHT = 0.66
_ROD_RADIUS = 0.02
_RING_CENTER = _GOLD[:3]
_RING_R = 0.22  # major radius
_RING_TUBE = 0.016  # minor radius
_RING_TILT_DEG = 20.0

# Material ids (what `_albedo` colours).
_M_BALL, _M_GOLD, _M_BEAD, _M_PEDESTAL, _M_BOX, _M_TORUS, _M_RING, _M_ROD = range(8)

Split = Literal["train", "val", "test"]


def make_scene(
    out_dir: str | Path,
    name: str = "toys",
    n_train: int = 100,
    n_test: int = 20,
    n_val: int = 10,
    resolution: int = 200,
    seed: int = 0,
) -> Path:
    """Render scene `name` and write it as a Blender data set; returns out_dir as a Path.

    Writes out_dir/transforms_{train,val,test}.json and out_dir/{split}/r_{i}.png (resolution x resolution
    RGBA, transparent where no object). Train and val cameras are spread evenly over the sphere of radius
    CAMERA_RADIUS between elevations -20 and 80 degrees (seed jitters them); test cameras circle at 30
    degrees elevation. Deterministic for a given seed.
    """
    _check_name(name)
    if resolution < 1 or min(n_train, n_test, n_val) < 0:
        raise VbnfError(f"make_scene: resolution must be >= 1 and view counts >= 0, got {resolution}, "
                        f"{n_train}/{n_val}/{n_test}; pass positive sizes")
    out = Path(out_dir)
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        cams = scene_cameras(n, resolution, split, seed)
        (out / split).mkdir(parents=True, exist_ok=True)
        frames = []
        for i in range(n):
            rgba = render_view(cams, i, SAMPLES_PER_PIXEL, _view_seed(seed, split, i), name)
            pixels = (rgba.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).numpy()
            Image.fromarray(pixels, "RGBA").save(out / split / f"r_{i}.png")
            frames.append({
                "file_path": f"./{split}/r_{i}",
                "rotation": 0.0,
                "transform_matrix": cams.c2w[i].tolist(),
            })
        meta = {"camera_angle_x": CAMERA_ANGLE_X, "frames": frames}
        (out / f"transforms_{split}.json").write_text(json.dumps(meta, indent=2))
    return out


def scene_cameras(n: int, resolution: int, split: Split = "train", seed: int = 0) -> Cameras:
    """The n cameras `make_scene` uses for a split, resolution x resolution pixels, looking at the origin.

    train/val: a Fibonacci spiral (even area coverage) between TRAIN_ELEVATION_RANGE_DEG, rotated and
    jittered by seed (val uses another stream than train); test: an orbit at TEST_ELEVATION_DEG.
    """
    focal = 0.5 * resolution / math.tan(0.5 * CAMERA_ANGLE_X)
    gen = torch.Generator().manual_seed(_view_seed(seed, split, -1))
    poses = []
    lo, hi = (math.sin(math.radians(e)) for e in TRAIN_ELEVATION_RANGE_DEG)
    golden = 180.0 * (3.0 - math.sqrt(5.0))  # degrees
    phase = float(torch.rand((), generator=gen)) * 360.0
    for i in range(n):
        if split == "test":
            az, el = 360.0 * i / max(n, 1) + 15.0, TEST_ELEVATION_DEG
        else:
            u = (i + 0.25 + 0.5 * float(torch.rand((), generator=gen))) / n
            el = math.degrees(math.asin(lo + (hi - lo) * u))
            az = phase + golden * i
        poses.append(look_at(orbit_position(torch.zeros(3), CAMERA_RADIUS, az, el), torch.zeros(3)))
    c2w = torch.stack(poses) if poses else torch.zeros(0, 4, 4)
    return make_cameras(c2w, focal, focal, 0.5 * resolution, 0.5 * resolution, resolution, resolution)


def render_view(
    cams: Cameras, cam_index: int, samples_per_pixel: int = SAMPLES_PER_PIXEL, seed: int = 0, name: str = "toys"
) -> torch.Tensor:
    """[H,W,4] float32 straight-alpha RGBA in [0,1] of scene `name` seen by camera cam_index.

    samples_per_pixel is rounded down to a square s*s (at least 1); samples are stratified and jittered
    inside each pixel with a generator seeded by seed. Colour is the mean over the samples that hit.
    """
    _check_name(name)
    s = max(1, int(math.isqrt(max(1, samples_per_pixel))))
    w, h = cams.width, cams.height
    gen = torch.Generator().manual_seed(seed)
    cols = torch.arange(w, dtype=torch.float32)
    rows = torch.arange(h, dtype=torch.float32)
    sub = torch.arange(s, dtype=torch.float32)
    # [H,W,s,s] sample positions: pixel corner + (stratum + jitter) / s
    jitter = torch.rand(2, h, w, s, s, generator=gen)
    px = cols[None, :, None, None] + (sub[None, None, None, :] + jitter[0]) / s
    py = rows[:, None, None, None] + (sub[None, None, :, None] + jitter[1]) / s
    px, py = px.reshape(-1), py.reshape(-1)
    ids = torch.full_like(px, cam_index, dtype=torch.long)
    origins, dirs = rays_from_pixels(cams, ids, px, py)
    rgb, alpha = render_rays(origins, dirs, name)
    rgb = (rgb * alpha[:, None]).reshape(h, w, s * s, 3).sum(2)
    alpha = alpha.reshape(h, w, s * s).mean(2)
    rgb = rgb / (alpha[..., None] * (s * s)).clamp_min(1e-8)
    rgb = torch.where(alpha[..., None] > 0, rgb, torch.zeros_like(rgb))
    return torch.cat([rgb.clamp(0.0, 1.0), alpha[..., None]], dim=-1)


def render_rays(origins: torch.Tensor, dirs: torch.Tensor, name: str = "toys") -> tuple[torch.Tensor, torch.Tensor]:
    """Shade rays: origins [R,3], dirs [R,3] unit -> (rgb [R,3] in [0,1], 0 where missed; alpha [R] 0 or 1)."""
    _check_name(name)
    t, prim = intersect_scene(origins, dirs, name)
    hit = torch.isfinite(t)
    rgb = torch.zeros_like(origins)
    if bool(hit.any()):
        o, d, th, ph = origins[hit], dirs[hit], t[hit], prim[hit]
        points = o + th[:, None] * d
        normals, materials, local = _surface(points / _SCALE, ph)
        albedo = _albedo(materials, local, ph)
        light = torch.tensor(_LIGHT_DIR) / torch.tensor(_LIGHT_DIR).norm()
        lambert = (normals @ light).clamp_min(0.0)
        t_shadow, _ = intersect_scene(points + 1e-3 * normals, light.expand_as(points).contiguous(), name)
        lit = torch.isinf(t_shadow).float()
        ambient = 0.30 + 0.12 * normals[:, 2]
        rgb[hit] = (albedo * (ambient + 0.78 * lambert * lit)[:, None]).clamp(0.0, 1.0)
    return rgb, hit.float()


def intersect_scene(
    origins: torch.Tensor, dirs: torch.Tensor, name: str = "toys"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest hit of each ray: origins [R,3], dirs [R,3] unit -> (t [R] world units, inf on a miss;
    primitive id [R] long, -1 on a miss). Hits closer than 1e-4 are ignored."""
    _check_name(name)
    if origins.shape != dirs.shape or origins.dim() != 2 or origins.shape[1] != 3:
        raise ValueError(f"origins and dirs must both be [R,3], got {list(origins.shape)} and {list(dirs.shape)}")
    origins = origins.float() / _SCALE  # to model units; t scales back since dirs stay unit length
    dirs = dirs.float()
    centers, radii, _ = _spheres()
    t_spheres = _hit_spheres(origins, dirs, centers, radii)  # [R,K]
    t_ped = _hit_cylinder(origins, dirs, _PED_RADIUS, _PED_BOTTOM, _PED_TOP)
    t_box = _hit_box(origins, dirs, torch.tensor(_BOX_CENTER), torch.tensor(_BOX_HALF), _box_rotation())
    t_torus = _hit_torus(origins, dirs, torch.tensor(_TORUS_CENTER), _torus_frame(), _TORUS_R, _TORUS_TUBE)
    parts = [t_spheres, t_ped[:, None], t_box[:, None], t_torus[:, None]]
    if name == "lattice":
        parts.append(_hit_torus(origins, dirs, torch.tensor(_RING_CENTER), _ring_frame(), _RING_R, _RING_TUBE)[:, None])
        parts.append(_hit_tower(origins, dirs))
    t_all = torch.cat(parts, dim=1)
    t, prim = t_all.min(dim=1)
    t = t * _SCALE
    prim = torch.where(torch.isfinite(t), prim, torch.full_like(prim, -1))
    return t, prim


def _check_name(name: str) -> None:
    """VbnfError unless name is a known scene."""
    if name not in SCENE_NAMES:
        raise VbnfError(f"unknown scene {name!r}; available scenes: {', '.join(SCENE_NAMES)}")


def _view_seed(seed: int, split: str, index: int) -> int:
    """A distinct, reproducible generator seed per (seed, split, view); index -1 is the split's camera stream."""
    return (seed * 1_000_003 + {"train": 0, "val": 1, "test": 2}[split] * 100_003 + index + 1) % (2**63)


def _spheres() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All spheres of "toys": centres [K,3], radii [K], material ids [K] long (ball, gold ball, then beads)."""
    centers = [_BALL[:3], _GOLD[:3]]
    radii = [_BALL[3], _GOLD[3]]
    materials = [_M_BALL, _M_GOLD]
    for k in range(_BEADS):
        a = 2.0 * math.pi * (k + 0.5) / _BEADS
        centers.append((_BEAD_RING * math.cos(a), _BEAD_RING * math.sin(a), _PED_TOP + _BEAD_RADIUS))
        radii.append(_BEAD_RADIUS)
        materials.append(_M_BEAD)
    return torch.tensor(centers), torch.tensor(radii), torch.tensor(materials)


def _box_rotation() -> torch.Tensor:
    """[3,3] box local -> world rotation (yaw about +z)."""
    a = math.radians(_BOX_YAW_DEG)
    return torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])


def _torus_frame() -> torch.Tensor:
    """[3,3] torus local -> world rotation; local z is the torus axis (horizontal, so the ring stands upright,
    its plane facing along (1,1,0))."""
    u = torch.tensor([1.0, -1.0, 0.0]) / math.sqrt(2.0)  # in the ring's plane
    axis = torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2.0)
    up = torch.tensor([0.0, 0.0, 1.0])
    return torch.stack([u, up, axis], dim=1)


def _ring_frame() -> torch.Tensor:
    """[3,3] thin ring local -> world rotation: local z (the axis) is +z tilted by _RING_TILT_DEG about x."""
    a = math.radians(_RING_TILT_DEG)
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(a), -math.sin(a)], [0.0, math.sin(a), math.cos(a)]])


def _rods() -> tuple[torch.Tensor, torch.Tensor]:
    """The lattice tower's rods as end points a [N,3], b [N,3] (model units): 4 posts, 3 storeys of 4 beams
    and one diagonal per side face (N = 20)."""
    x0, y0 = _TOWER_XY
    h = _TOWER_HALF
    corners = [(x0 - h, y0 - h), (x0 + h, y0 - h), (x0 + h, y0 + h), (x0 - h, y0 + h)]
    z0 = _PED_TOP
    heights = [z0 + _TOWER_HEIGHT * f for f in (1.0 / 3.0, 2.0 / 3.0, 1.0)]
    a, b = [], []
    for x, y in corners:
        a.append((x, y, z0))
        b.append((x, y, z0 + _TOWER_HEIGHT))
    for z in heights:
        for k in range(4):
            a.append((*corners[k], z))
            b.append((*corners[(k + 1) % 4], z))
    for k in range(4):  # a diagonal on each face, climbing the lowest storey to the second
        a.append((*corners[k], z0 + 0.02))
        b.append((*corners[(k + 1) % 4], heights[1]))
    return torch.tensor(a), torch.tensor(b)


def _rod_frame(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Rod a->b ([3] each): (centre [3], frame [3,3] local -> world with local z along the rod, half length)."""
    axis = (b - a) / (b - a).norm()
    helper = torch.tensor([1.0, 0.0, 0.0]) if abs(float(axis[0])) < 0.9 else torch.tensor([0.0, 1.0, 0.0])
    u = torch.linalg.cross(helper, axis)
    u = u / u.norm()
    v = torch.linalg.cross(axis, u)
    return 0.5 * (a + b), torch.stack([u, v, axis], dim=1), 0.5 * float((b - a).norm())


def _hit_rod(o: torch.Tensor, d: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """t [R] of the first hit beyond _T_MIN with the closed cylinder of radius _ROD_RADIUS from a to b [3],
    lengthened by the radius at both ends so that joints close; inf on a miss."""
    center, frame, half = _rod_frame(a, b)
    return _hit_cylinder((o - center) @ frame, d @ frame, _ROD_RADIUS, -half - _ROD_RADIUS, half + _ROD_RADIUS)


def _hit_tower(o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """t [R,N] of rays o, d [R,3] with each of the N rods of _rods(); only rays that meet the tower's bounding
    box are tested (inf for the others)."""
    rods_a, rods_b = _rods()
    lo = torch.minimum(rods_a, rods_b).min(0).values - 2 * _ROD_RADIUS
    hi = torch.maximum(rods_a, rods_b).max(0).values + 2 * _ROD_RADIUS
    near = torch.isfinite(_hit_box(o, d, 0.5 * (lo + hi), 0.5 * (hi - lo), torch.eye(3)))
    near = near | ((o >= lo) & (o <= hi)).all(dim=1)
    t = torch.full((o.shape[0], rods_a.shape[0]), _INF)
    idx = torch.nonzero(near).squeeze(1)
    if idx.numel():
        t[idx] = torch.stack([_hit_rod(o[idx], d[idx], a, b) for a, b in zip(rods_a, rods_b)], dim=1)
    return t


def _hit_spheres(o: torch.Tensor, d: torch.Tensor, centers: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """t [R,K] of the first hit beyond _T_MIN of rays o, d [R,3] (d unit) with K spheres; inf on a miss."""
    oc = o[:, None, :] - centers[None]  # [R,K,3]
    b = (oc * d[:, None, :]).sum(-1)
    c = (oc * oc).sum(-1) - radii[None] ** 2
    disc = b * b - c
    sq = disc.clamp_min(0.0).sqrt()
    t0, t1 = -b - sq, -b + sq
    t = torch.where(t0 > _T_MIN, t0, torch.where(t1 > _T_MIN, t1, torch.full_like(t0, _INF)))
    return torch.where(disc >= 0, t, torch.full_like(t, _INF))


def _hit_cylinder(o: torch.Tensor, d: torch.Tensor, radius: float, z0: float, z1: float) -> torch.Tensor:
    """t [R] of the first hit beyond _T_MIN with the closed cylinder x^2+y^2 <= radius^2, z0 <= z <= z1."""
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1]
    c = o[:, 0] ** 2 + o[:, 1] ** 2 - radius**2
    disc = b * b - a * c
    sq = disc.clamp_min(0.0).sqrt()
    a_safe = a.clamp_min(1e-12)
    inf = torch.full_like(a, _INF)
    best = inf
    for t in ((-b - sq) / a_safe, (-b + sq) / a_safe):
        z = o[:, 2] + t * d[:, 2]
        ok = (disc >= 0) & (a > 1e-12) & (t > _T_MIN) & (z >= z0) & (z <= z1)
        best = torch.minimum(best, torch.where(ok, t, inf))
    dz = torch.where(d[:, 2].abs() < 1e-12, torch.full_like(a, 1e-12), d[:, 2])
    for zc in (z0, z1):
        t = (zc - o[:, 2]) / dz
        x = o[:, 0] + t * d[:, 0]
        y = o[:, 1] + t * d[:, 1]
        ok = (t > _T_MIN) & (x * x + y * y <= radius**2)
        best = torch.minimum(best, torch.where(ok, t, inf))
    return best


def _hit_box(o: torch.Tensor, d: torch.Tensor, center: torch.Tensor, half: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """t [R] of the first hit beyond _T_MIN with an oriented box (centre [3], half extents [3], rotation [3,3]
    local -> world); inf on a miss. Slab method."""
    ol = (o - center) @ rot  # world -> local: R^T (o - c), written row-wise
    dl = d @ rot
    dl = torch.where(dl.abs() < 1e-12, torch.full_like(dl, 1e-12), dl)
    ta = (-half - ol) / dl
    tb = (half - ol) / dl
    t_near = torch.minimum(ta, tb).max(dim=1).values
    t_far = torch.maximum(ta, tb).min(dim=1).values
    t = torch.where(t_near > _T_MIN, t_near, t_far)
    ok = (t_far >= t_near) & (t > _T_MIN)
    return torch.where(ok, t, torch.full_like(t, _INF))


def _torus_sdf(p: torch.Tensor, major: float, minor: float) -> torch.Tensor:
    """Signed distance [R] from local points p [R,3] to a torus around the local z axis."""
    q = torch.stack([p[:, :2].norm(dim=1) - major, p[:, 2]], dim=1)
    return q.norm(dim=1) - minor


def _hit_torus(
    o: torch.Tensor, d: torch.Tensor, center: torch.Tensor, frame: torch.Tensor, major: float, minor: float
) -> torch.Tensor:
    """t [R] of the first hit beyond _T_MIN with a torus (centre [3], frame [3,3] local -> world, local z the
    axis); inf on a miss. Sphere tracing inside the bounding sphere, on the still-active rays only."""
    ol = (o - center) @ frame
    dl = d @ frame
    bound = major + minor + 1e-3
    b = (ol * dl).sum(1)
    c = (ol * ol).sum(1) - bound**2
    disc = b * b - c
    result = torch.full_like(b, _INF)
    sq = disc.clamp_min(0.0).sqrt()
    t_exit = -b + sq
    active = torch.nonzero((disc > 0) & (t_exit > _T_MIN)).squeeze(1)
    t = (-b - sq).clamp_min(_T_MIN)[active]
    t_end = t_exit[active]
    for _ in range(_TORUS_STEPS):
        if active.numel() == 0:
            break
        dist = _torus_sdf(ol[active] + t[:, None] * dl[active], major, minor)
        done = dist.abs() < _TORUS_EPS
        result[active[done]] = t[done]
        keep = ~done & (t < t_end)
        active, t, t_end = active[keep], (t + dist.abs())[keep], t_end[keep]
    return result



def _ring_surface(points: torch.Tensor, center, frame: torch.Tensor, radius: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Points [M,3] on a torus-like surface (centre, frame [3,3] whose z is the axis, major radius) -> (world
    normals [M,3], local coordinates [M,3])."""
    pl = (points - torch.tensor(center)) @ frame
    ring = torch.cat([pl[:, :2] / pl[:, :2].norm(dim=1, keepdim=True).clamp_min(1e-9), torch.zeros_like(pl[:, :1])], 1)
    nl = pl - radius * ring
    nl = nl / nl.norm(dim=1, keepdim=True).clamp_min(1e-9)
    return nl @ frame.T, pl

def _surface(points: torch.Tensor, prim: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per hit: unit normal [R,3], material id [R] long, and local coordinates [R,3] of the primitive
    (sphere: offset from centre; pedestal: world; box and torus: their local frames)."""
    centers, _, sphere_materials = _spheres()
    k = centers.shape[0]
    normals = torch.zeros_like(points)
    local = points.clone()
    materials = torch.zeros_like(prim)
    m = prim < k
    if bool(m.any()):
        rel = points[m] - centers[prim[m]]
        normals[m] = rel / rel.norm(dim=1, keepdim=True)
        local[m] = rel
        materials[m] = sphere_materials[prim[m]]
    m = prim == k
    if bool(m.any()):
        p = points[m]
        rxy = p[:, :2].norm(dim=1, keepdim=True).clamp_min(1e-9)
        side = torch.cat([p[:, :2] / rxy, torch.zeros_like(rxy)], dim=1)
        d_side = (rxy[:, 0] - _PED_RADIUS).abs()
        d_top = (p[:, 2] - _PED_TOP).abs()
        d_bot = (p[:, 2] - _PED_BOTTOM).abs()
        n = torch.where((d_top <= d_side)[:, None], torch.tensor([0.0, 0.0, 1.0]).expand_as(p), side)
        n = torch.where(((d_bot <= d_side) & (d_bot < d_top))[:, None], torch.tensor([0.0, 0.0, -1.0]).expand_as(p), n)
        normals[m] = n
        materials[m] = _M_PEDESTAL
    m = prim == k + 1
    if bool(m.any()):
        rot = _box_rotation()
        half = torch.tensor(_BOX_HALF)
        pl = (points[m] - torch.tensor(_BOX_CENTER)) @ rot
        axis = (pl.abs() / half).argmax(dim=1)
        nl = torch.zeros_like(pl)
        nl[torch.arange(pl.shape[0]), axis] = torch.sign(pl[torch.arange(pl.shape[0]), axis])
        normals[m] = nl @ rot.T
        local[m] = pl
        materials[m] = _M_BOX
    m = prim == k + 2
    if bool(m.any()):
        normals[m], local[m] = _ring_surface(points[m], _TORUS_CENTER, _torus_frame(), _TORUS_R)
        materials[m] = _M_TORUS
    m = prim == k + 3
    if bool(m.any()):
        normals[m], local[m] = _ring_surface(points[m], _RING_CENTER, _ring_frame(), _RING_R)
        materials[m] = _M_RING
    m = prim >= k + 4
    if bool(m.any()):
        rods_a, rods_b = _rods()
        idx = torch.nonzero(m).squeeze(1)
        for r in range(rods_a.shape[0]):
            sel = idx[prim[idx] == k + 4 + r]
            if sel.numel() == 0:
                continue
            center, frame, half = _rod_frame(rods_a[r], rods_b[r])
            pl = (points[sel] - center) @ frame
            rxy = pl[:, :2].norm(dim=1, keepdim=True).clamp_min(1e-9)
            nl = torch.cat([pl[:, :2] / rxy, torch.zeros_like(rxy)], dim=1)
            cap = (pl[:, 2].abs() - (half + _ROD_RADIUS)).abs() < (rxy[:, 0] - _ROD_RADIUS).abs()
            nl = torch.where(cap[:, None], torch.stack([torch.zeros_like(rxy[:, 0]), torch.zeros_like(rxy[:, 0]),
                                                        torch.sign(pl[:, 2])], dim=1), nl)
            normals[sel] = nl @ frame.T
            local[sel] = torch.stack([pl[:, 0], pl[:, 1], pl[:, 2] + half], dim=1)  # z: distance along the rod
            materials[sel] = _M_ROD
    return normals, materials, local


def _hsv(h: torch.Tensor, s: float, v: float) -> torch.Tensor:
    """[R,3] RGB of hues h [R] in [0,1) at fixed saturation and value."""
    k = torch.stack([h * 6.0 + o for o in (5.0, 3.0, 1.0)], dim=1) % 6.0
    return v - v * s * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)


def _parity(*coords: torch.Tensor) -> torch.Tensor:
    """[R] bool: whether the sum of floor(coords) is odd (a checkerboard over the given cell coordinates)."""
    return (sum(torch.floor(c) for c in coords) % 2).bool()


def _mix(mask: torch.Tensor, a: tuple[float, float, float], b: tuple[float, float, float]) -> torch.Tensor:
    """[R,3]: colour a where mask is true, b elsewhere."""
    return torch.where(mask[:, None], torch.tensor(a), torch.tensor(b))


def _albedo(materials: torch.Tensor, local: torch.Tensor, prim: torch.Tensor) -> torch.Tensor:
    """[R,3] surface colour in [0,1] from material ids [R] and primitive-local hit points [R,3]."""
    out = torch.zeros_like(local)
    m = materials == _M_BALL
    if bool(m.any()):
        p = local[m] / _BALL[3]
        lon = torch.atan2(p[:, 1], p[:, 0]) / (2.0 * math.pi) * 16.0
        lat = torch.asin(p[:, 2].clamp(-1.0, 1.0)) / math.pi * 10.0
        out[m] = _mix(_parity(lon, lat), (0.86, 0.12, 0.14), (0.96, 0.91, 0.80))
    m = materials == _M_GOLD
    if bool(m.any()):
        bands = torch.asin((local[m][:, 2] / _GOLD[3]).clamp(-1.0, 1.0)) / math.pi * 14.0
        out[m] = _mix(_parity(bands), (0.98, 0.78, 0.25), (0.72, 0.48, 0.10))
    m = materials == _M_BEAD
    if bool(m.any()):
        centers, _, _ = _spheres()
        c = centers[prim[m]]
        hue = (torch.atan2(c[:, 1], c[:, 0]) / (2.0 * math.pi)) % 1.0
        out[m] = _hsv(hue, 0.75, 0.95)
    m = materials == _M_PEDESTAL
    if bool(m.any()):
        p = local[m]
        top = _mix(_parity(p[:, 0] / 0.07, p[:, 1] / 0.07), (0.90, 0.89, 0.86), (0.56, 0.60, 0.66))
        r = p[:, :2].norm(dim=1)
        rim = (r > _PED_RADIUS - 0.035) & (p[:, 2] > _PED_TOP - 1e-3)
        top = torch.where(rim[:, None], torch.tensor([0.85, 0.65, 0.20]), top)
        stripes = _parity(torch.atan2(p[:, 1], p[:, 0]) / (2.0 * math.pi) * 64.0)
        side = _mix(stripes, (0.10, 0.45, 0.50), (0.20, 0.68, 0.70))
        on_top = p[:, 2] > _PED_TOP - 1e-3
        on_bottom = p[:, 2] < _PED_BOTTOM + 1e-3
        col = torch.where(on_top[:, None], top, side)
        out[m] = torch.where(on_bottom[:, None], torch.tensor([0.55, 0.55, 0.60]), col)
    m = materials == _M_BOX
    if bool(m.any()):
        p = local[m]
        out[m] = _mix(_parity((p[:, 0] + p[:, 1] + p[:, 2]) / 0.045), (0.97, 0.55, 0.10), (0.98, 0.96, 0.92))
    m = materials == _M_TORUS
    if bool(m.any()):
        p = local[m]
        phi = torch.atan2(p[:, 1], p[:, 0]) / (2.0 * math.pi) % 1.0  # around the ring
        rxy = p[:, :2].norm(dim=1)
        theta = torch.atan2(p[:, 2], rxy - _TORUS_R) / (2.0 * math.pi)  # around the tube
        base = _hsv(phi, 0.80, 0.95)
        stripes = _parity(theta * 10.0 + phi * 24.0)  # candy-cane spiral; even factors keep it seamless
        out[m] = torch.where(stripes[:, None], base, base * 0.45 + 0.5)
    m = materials == _M_RING
    if bool(m.any()):
        p = local[m]
        phi = torch.atan2(p[:, 1], p[:, 0]) / (2.0 * math.pi) * 48.0  # 48 stripes around the ring
        out[m] = _mix(_parity(phi), (0.20, 0.35, 0.95), (0.95, 0.95, 0.98))
    m = materials == _M_ROD
    if bool(m.any()):
        centers, _, _ = _spheres()
        rod = (prim[m] - centers.shape[0] - 4).float()
        base = _hsv((rod * 0.618034) % 1.0, 0.85, 0.95)  # golden-ratio hues: neighbours differ
        bands = _parity(local[m][:, 2] / 0.035)  # bands 0.035 model units long along the rod
        out[m] = torch.where(bands[:, None], base, base * 0.25 + 0.05)
    return out


def add_arguments(parser) -> None:
    """`vbnf make-scene OUT`: write the procedural demo data set (Blender format)."""
    from engine.cli_checks import int_in, seed_int
    parser.add_argument("out", help="folder to write (transforms_*.json and PNGs)")
    parser.add_argument("--name", default="toys", choices=SCENE_NAMES,
                        help="toys, or lattice (toys with thin rods and a thin ring: the bundled model's scene)")
    parser.add_argument("--resolution", type=int_in(1, 4096, "a size in pixels"), default=200)
    parser.add_argument("--train", type=int_in(1, 10000, "a view count"), default=100)
    parser.add_argument("--test", type=int_in(0, 10000, "a view count"), default=20)
    parser.add_argument("--val", type=int_in(0, 10000, "a view count"), default=10)
    parser.add_argument("--seed", type=seed_int, default=0)
    parser.add_argument("--force", action="store_true", help="overwrite a data set already in OUT")


def run(args) -> int:
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise VbnfError(f"{out_dir} is a file, not a folder; choose another OUT")
    existing = sorted(out_dir.glob("transforms*.json")) if out_dir.is_dir() else []
    if existing and not args.force:
        raise VbnfError(f"{out_dir} already holds a data set ({existing[0].name}); pass --force to overwrite it or "
                        "choose another OUT")
    out = make_scene(args.out, args.name, args.train, args.test, args.val, args.resolution, args.seed)
    print(f"wrote {out} ({args.train}/{args.val}/{args.test} views at {args.resolution}x{args.resolution})")
    return 0
