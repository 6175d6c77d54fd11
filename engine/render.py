"""Reference volume renderer in plain torch: the CPU fallback, the trainer's renderer, and the oracle that the CUDA
marcher is tested against. The marcher must reproduce these sample positions and this compositing exactly.

Sampling: a ray is clipped to the scene cube, giving [t_near, t_far] (world units along the unit direction). Samples
sit at t_k = t_near + (k + offset) * step for k = 0, 1, ... while t_k < t_far; offset = 0.5 at inference, a random
number in [0, 1) per ray in training. `step` depends on the complete model's finest level (`default_step`), not on
the LOD, so a coarse LOD and a file prefix use the same samples. A sample counts only where the octree cell holding
it at the LOD's octree level is occupied; elsewhere the density is zero.

Compositing: alpha_k = 1 - exp(-sigma_k * step); T_k = prod_{j<k} (1 - alpha_j); weight_k = T_k * alpha_k;
colour = sum_k weight_k rgb_k + (1 - sum_k weight_k) * background. The marcher stops once T < EARLY_STOP; the
reference does not stop, so the two differ by less than EARLY_STOP per channel.
"""
from __future__ import annotations

import math

import torch

from engine.errors import VbnfError
from engine.field import FieldFn, InferenceField
from engine.modes import RENDER_MODES, RenderMode  # noqa: F401  (engine.render.RENDER_MODES for its callers)
from engine.octree import Octree, descend, lookup_occupied

EARLY_STOP = 1e-4
STEPS_PER_CELL = 2.0
SKIP_CHUNK = 1 << 20  # samples per chunk of the no-gradient pass of skip_hidden
SAMPLE_BUDGET = 1 << 22
"""Ray samples one chunk of `render_field_rays` may hold ([rays, samples] tensors): the chunk of rays shrinks as the
samples per ray grow, so memory is bounded by this constant, not by the model's level count."""
MAX_SAMPLES_PER_RAY = 1 << 16
"""The torch renderer refuses a model whose step would need more samples per ray (finest octree level above 14)."""


class RenderError(VbnfError):
    """A model the renderer cannot render within its bounds (one line)."""


def default_step(scene_half_size: float, finest_level: int) -> float:
    """Ray-marching step in world units: half of a finest-level cell's edge."""
    return 2.0 * scene_half_size / (1 << finest_level) / STEPS_PER_CELL


def max_samples_per_ray(half_size: float, step: float) -> int:
    """Samples that the longest chord of the scene cube (its diagonal) can hold at this step."""
    return int(math.ceil(2.0 * math.sqrt(3.0) * half_size / step)) + 1


def field_step(field: InferenceField) -> float:
    return default_step(field.scene_half_size, field.base_level + field.n_lods - 1)


def samples_per_ray_bound(field: InferenceField) -> int:
    """Most samples any ray can take through the scene cube (its diagonal over the step); RenderError when the
    scene box or the level count give a step the renderer cannot march (not finite, or more than
    MAX_SAMPLES_PER_RAY samples)."""
    finest = field.base_level + field.n_lods - 1
    half = float(field.scene_half_size)
    center_ok = bool(torch.isfinite(torch.as_tensor(field.scene_center, dtype=torch.float64)).all())
    step = default_step(half, min(finest, 1000)) if math.isfinite(half) else math.nan
    if not (math.isfinite(half) and half > 0 and center_ok and math.isfinite(step) and step > 0):
        raise RenderError(f"the model's scene box is not finite and positive (half size {half:g}); it cannot be "
                          "rendered: re-export the model")
    bound = math.sqrt(3.0) * STEPS_PER_CELL * 2.0 ** min(finest, 1000) + 2
    if bound > MAX_SAMPLES_PER_RAY:
        raise RenderError(f"the model's finest octree level {finest} (base level {field.base_level} + {field.n_lods} "
                          f"LODs) needs up to {bound:,.0f} samples per ray; the torch renderer marches at most "
                          f"{MAX_SAMPLES_PER_RAY:,}: the file's level count is implausible")
    return int(math.ceil(bound))


def ray_cube_interval(origins: torch.Tensor, dirs: torch.Tensor, center: torch.Tensor, half_size: float
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Slab test against the scene cube. origins, unit dirs [R,3] world -> (t_near [R], t_far [R]) world units,
    t_near >= 0; rays that miss get t_far <= t_near."""
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    inv = 1.0 / safe
    t0 = (center - half_size - origins) * inv
    t1 = (center + half_size - origins) * inv
    t_near = torch.minimum(t0, t1).amax(dim=1).clamp_min(0.0)
    t_far = torch.maximum(t0, t1).amin(dim=1)
    return t_near, t_far


def to_unit(points: torch.Tensor, center: torch.Tensor, half_size: float) -> torch.Tensor:
    """World points [...,3] -> unit-cube coordinates [...,3]."""
    return (points - center) / (2.0 * half_size) + 0.5


def render_rays(field_fn: FieldFn, octree: Octree, level: int, center: torch.Tensor, half_size: float,
                step: float, origins: torch.Tensor, dirs: torch.Tensor, background: torch.Tensor,
                offsets: torch.Tensor | None = None, extras: tuple[str, ...] = (), skip_hidden: bool = False,
                max_samples: int | None = None, sample_sizes: tuple[int, int, int] | None = None,
                count_samples: bool = False) -> dict[str, torch.Tensor]:
    """Volume-renders rays through the occupied cells of `level`.

    field_fn: see engine/field.py; octree: must hold `level`; origins, dirs: float [R,3] world (dirs unit length);
    background: float [3], or [R,3] (one per ray); offsets: float [R] in [0,1) (None: 0.5, the inference sampling);
    extras: any of "depth", "normal", "samples", "level", "cell_weight".
    skip_hidden: first evaluate every sample without gradients, then evaluate (with gradients) only those whose
    transmittance is still >= EARLY_STOP, as the marcher does (training: samples behind opaque surfaces cost
    nothing; the image changes by less than EARLY_STOP).
    max_samples: samples per ray to lay out (`max_samples_per_ray`: enough for any ray); None: as many as the
    longest of these rays needs, which reads a value back from the device.
    sample_sizes: (inside, occupied, visible) sizes of the packed sample arrays (engine/sample_budget.py): with
    max_samples given, nothing is read back from the device; samples beyond a size are dropped and the rays that
    lost some are not "complete". None: exact compaction (`nonzero`, which waits for the device). No extras.
    count_samples: also return "sample_counts".
    Returns "rgb" [R,3], "opacity" [R], and per extra: "depth" [R] (sum of weight * t, world units),
    "normal" [R,3] (weighted unit normals, -grad sigma), "samples" [R] (samples evaluated before T < EARLY_STOP),
    "level" [R] (deepest occupied octree level met before termination, -1 if none),
    "cell_weight" [n cells of `level`] (the largest rendering weight of any of these rays' samples in each cell).
    With sample_sizes: "complete" bool [R] (the ray kept all its samples). With count_samples: "sample_counts"
    int64 [3] (samples inside the cube, in occupied cells, visible: what sample_sizes has to hold).
    """
    if sample_sizes is not None and (extras or max_samples is None):
        raise ValueError("render_rays: sample_sizes needs max_samples and no extras")
    r = origins.shape[0]
    device = origins.device
    t_near, t_far = ray_cube_interval(origins, dirs, center, half_size)
    if offsets is None:
        offsets = torch.full((r,), 0.5, device=device)
    span = (t_far - t_near).clamp_min(0.0)
    if max_samples is not None:
        k_max = max_samples
    else:
        k_max = int(torch.ceil(span.max() / step).item()) + 1 if r else 0
    k = torch.arange(max(k_max, 1), device=device, dtype=origins.dtype)
    t = t_near[:, None] + (k[None, :] + offsets[:, None]) * step  # [R,K]
    inside = t < t_far[:, None]

    # samples are kept packed from here on, ordered by ray then by distance (nonzero's row-major order; every later
    # selection keeps that order): no [R,K,3] points and no [R,K] compositing. With sample_sizes the packed arrays
    # end in padding, each entry a dummy ray of its own (index >= r: dropped at the end; a shared dummy ray would
    # make one long run of equal indices, which the backward of packed_transmittance's gather serialises)
    padded = sample_sizes is not None
    sizes = sample_sizes or (None, None, None)
    counts: list = []  # per compaction: its count
    packed_rays: list[torch.Tensor] = []  # per compaction: the ray of each entry
    flat = _compact(inside.flatten(), sizes[0], counts)
    ray_id = _dummy_rays(flat // t.shape[1], flat < t.numel(), r) if padded else flat // t.shape[1]
    sample_id = flat % t.shape[1]
    packed_rays.append(ray_id)
    t_inside = t.flatten()[_rows(flat, t.numel(), padded)]
    ray_rows = _rows(ray_id, r, padded)
    cand = to_unit(origins[ray_rows] + t_inside[:, None] * dirs[ray_rows], center, half_size)
    occupied = lookup_occupied(octree, cand, level)  # cheap cull, then descend survivors only
    keep = _compact(occupied & (ray_id < r) if padded else occupied, sizes[1], counts)
    ray_k, sample_k = _take(ray_id, keep, r, padded), _take(sample_id, keep, None, padded)
    packed_rays.append(ray_k)
    pts = cand[_rows(keep, cand.shape[0], padded)]
    cell_index = descend(octree, pts, level)[0] if getattr(field_fn, "needs_cells", True) else None
    if skip_hidden and pts.shape[0]:
        with torch.no_grad():  # in chunks: this pass sees every sample, so its temporaries would set the peak
            density = getattr(field_fn, "density", None)  # the density alone: the colour branch is half the MLP
            parts = []
            for i in range(0, pts.shape[0], SKIP_CHUNK):
                cells = None if cell_index is None else cell_index[:, i:i + SKIP_CHUNK]
                parts.append(density(pts[i:i + SKIP_CHUNK], cells) if density is not None else
                             field_fn(pts[i:i + SKIP_CHUNK], cells, dirs[_rows(ray_k[i:i + SKIP_CHUNK], r, padded)])[0])
            sigma = torch.cat(parts)
            seen = packed_transmittance(sigma, ray_k, step)[0] >= EARLY_STOP
            visible = _compact(seen & (ray_k < r) if padded else seen, sizes[2], counts)
        rows = _rows(visible, pts.shape[0], padded)
        ray_k, sample_k = _take(ray_k, visible, r, padded), _take(sample_k, visible, None, padded)
        keep = _take(keep, visible, None, padded)
        packed_rays.append(ray_k)
        pts = pts[rows]
        cell_index = None if cell_index is None else cell_index[:, rows]
    want_normal = "normal" in extras
    if want_normal:
        pts = pts.detach().requires_grad_(True)
    training = torch.is_grad_enabled()
    with torch.set_grad_enabled(training or want_normal):
        sigma, rgb = field_fn(pts, cell_index, dirs[_rows(ray_k, r, padded)])
        normal = None
        if want_normal:
            (grad,) = torch.autograd.grad(sigma.sum(), pts, retain_graph=training)
            normal = -torch.nn.functional.normalize(grad, dim=1, eps=1e-12)

    transmittance, alpha = packed_transmittance(sigma, ray_k, step)
    w = transmittance * alpha  # [M] rendering weight of each sample
    rows = r + (ray_k.shape[0] if padded else 0)  # the dummy rays' rows take the padding, then go
    color = torch.zeros(rows, 3, device=device, dtype=rgb.dtype).index_add(0, ray_k, w[:, None] * rgb)[:r]
    opacity = torch.zeros(rows, device=device, dtype=w.dtype).index_add(0, ray_k, w)[:r]
    out = {"rgb": color + (1.0 - opacity)[:, None] * background, "opacity": opacity}
    if padded:
        out["complete"] = _complete_rays(r, counts, sizes, packed_rays)
    if count_samples:
        counts += counts[-1:] * (3 - len(counts))  # without the hidden-sample pass, every occupied one is visible
        out["sample_counts"] = torch.stack([torch.as_tensor(c, device=device) for c in counts])
    if "depth" in extras:
        out["depth"] = torch.zeros(r, device=device, dtype=w.dtype).index_add(0, ray_k, w * t_inside[keep])
    if want_normal:
        out["normal"] = torch.zeros(r, 3, device=device).index_add(0, ray_k, w[:, None].detach() * normal.detach())
    if "samples" in extras:  # samples reached before termination
        out["samples"] = torch.zeros(r, device=device).index_add(0, ray_k, (transmittance >= EARLY_STOP).float())
    if "level" in extras:  # here every inside sample counts, occupied or not: the dense transmittance
        dense_t = _transmittance(sigma.detach(), t.shape, ray_k, sample_k, step)[0]
        depth = descend(octree, cand, level)[2]
        reached = dense_t[ray_id, sample_id] >= EARLY_STOP
        lvl = torch.full((r,), -1, dtype=torch.int64, device=device)
        out["level"] = lvl.scatter_reduce(0, ray_id[reached], depth[reached], reduce="amax").float()
    if "cell_weight" in extras:
        cells = cell_index[level] if cell_index is not None else descend(octree, pts, level)[0][level]
        out["cell_weight"] = torch.zeros(octree.cells[level].numel(), device=device).scatter_reduce(
            0, cells, w.detach().float(), reduce="amax")
    return out


def _compact(mask: torch.Tensor, size: int | None, counts: list) -> torch.Tensor:
    """Indices (int64) of mask's True entries, in order: all of them (`nonzero`: waits for the device) when size is
    None, else exactly `size` of them, padded with mask.numel() (nothing read back). Appends the count to counts
    (a host int, or a device scalar with size)."""
    if size is None:
        idx = mask.nonzero().squeeze(1)
        counts.append(idx.shape[0])
        return idx
    counts.append(mask.sum())
    return torch.nonzero_static(mask, size=size, fill_value=mask.numel()).squeeze(1)


def _rows(idx: torch.Tensor, n: int, padded: bool) -> torch.Tensor:
    """idx as rows of an n-row tensor: padded, its padding (idx >= n, or a dummy ray's id) reads the last row."""
    return idx.clamp(max=n - 1) if padded else idx


def _take(values: torch.Tensor, idx: torch.Tensor, rays_from: int | None, padded: bool) -> torch.Tensor:
    """values[idx]. padded: idx may end in padding (idx >= len(values)); with rays_from (values are ray ids) a padded
    entry gets a dummy ray of its own, rays_from + its position; without, padded entries read values[-1] (unused)."""
    if not padded:
        return values[idx]
    n = values.shape[0]
    taken = values[idx.clamp(max=n - 1)]
    return taken if rays_from is None else _dummy_rays(taken, idx < n, rays_from)


def _dummy_rays(ray_ids: torch.Tensor, real: torch.Tensor, r: int) -> torch.Tensor:
    """ray_ids where `real`, else r + the entry's position (distinct and increasing: the order stays by ray)."""
    return torch.where(real, ray_ids, r + torch.arange(ray_ids.shape[0], device=ray_ids.device))


def _complete_rays(r: int, counts: list, sizes: tuple[int, int, int], packed_rays: list[torch.Tensor]
                   ) -> torch.Tensor:
    """bool [r]: rays that kept all their samples. Where a compaction's count exceeded its size, the entries past
    the end were dropped: every ray from the one holding that compaction's last entry on may have lost some.
    packed_rays: per compaction that ran, the ray of each of its `size` entries."""
    first_cut = torch.full((), r, dtype=torch.int64, device=packed_rays[0].device)
    for count, size, rays in zip(counts, sizes, packed_rays):
        first_cut = torch.where(count > size, torch.minimum(first_cut, rays[size - 1]), first_cut)
    return torch.arange(r, device=first_cut.device) < first_cut


def packed_transmittance(sigma: torch.Tensor, ray_k: torch.Tensor, step: float
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Densities of packed samples -> (transmittance before each sample [M], alpha [M]).

    sigma: float [M] (>= 0, 1/world units); ray_k: int64 [M] each sample's ray, non-decreasing, the samples of a ray
    in order of distance; step: world units. T_k = exp(-step * sum_{j<k} sigma_j) over the same ray's samples, which
    equals prod_{j<k} (1 - alpha_j): samples not listed have zero density. The optical depth is summed in float64
    over the whole batch and each ray's start subtracted, so the sum stays exact to ~1e-12 and costs O(M), not the
    O(R*K) of a dense cumprod.
    """
    tau = sigma * step
    alpha = 1.0 - torch.exp(-tau)
    before = torch.cumsum(tau.double(), 0) - tau.double()  # optical depth before each sample, from the batch start
    first = torch.searchsorted(ray_k, ray_k)  # index of each sample's ray's first sample
    transmittance = torch.exp(-(before - before[first])).to(sigma.dtype)
    return transmittance, alpha


def _transmittance(sigma: torch.Tensor, shape: torch.Size, ray_k: torch.Tensor, sample_k: torch.Tensor, step: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed densities sigma [M] at (ray_k, sample_k) -> (transmittance before each sample [R,K], alpha [R,K]);
    samples not listed have zero density."""
    dense_sigma = torch.zeros(shape, device=sigma.device, dtype=sigma.dtype).index_put((ray_k, sample_k), sigma)
    alpha = 1.0 - torch.exp(-dense_sigma * step)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha[:, :-1]], dim=1), dim=1)
    return transmittance, alpha


def render_field_rays(field: InferenceField, lod: int, origins: torch.Tensor, dirs: torch.Tensor,
                      background: torch.Tensor, extras: tuple[str, ...] = (), chunk: int = 1 << 14
                      ) -> dict[str, torch.Tensor]:
    """Renders an InferenceField at `lod` (clamped to what it holds) without gradients, in chunks of at most `chunk`
    rays and SAMPLE_BUDGET samples (memory bounded by those constants, whatever the file says); RenderError when the
    model cannot be marched (see samples_per_ray_bound)."""
    lod = max(0, min(lod, field.max_lod))
    rays_per_chunk = max(1, min(chunk, SAMPLE_BUDGET // samples_per_ray_bound(field)))
    fn = field.field_fn(lod)
    parts: dict[str, list[torch.Tensor]] = {}
    level = field.base_level + lod
    for i in range(0, origins.shape[0], rays_per_chunk):
        j = i + rays_per_chunk
        with torch.no_grad():
            out = render_rays(fn, field.octree, level, field.scene_center, field.scene_half_size, field_step(field),
                              origins[i:j], dirs[i:j], background, extras=extras)
        for key, value in out.items():
            parts.setdefault(key, []).append(value.detach())
    if not parts:  # no rays
        with torch.no_grad():
            empty = render_rays(fn, field.octree, level, field.scene_center, field.scene_half_size, field_step(field),
                                origins, dirs, background, extras=extras)
        return {key: value.detach() for key, value in empty.items()}
    return {key: torch.cat(values) for key, values in parts.items()}


def render_image(field: InferenceField, origins: torch.Tensor, dirs: torch.Tensor, width: int, height: int,
                 lod: int, mode: RenderMode = "rgb", background=(1.0, 1.0, 1.0), chunk: int = 1 << 14
                 ) -> torch.Tensor:
    """One image: rays [H*W,3] row-major -> float [H,W,3] (rgb, normal) or [H,W] (depth, samples, level)."""
    if mode not in RENDER_MODES:
        raise ValueError(f"unknown render mode '{mode}': choose one of {', '.join(RENDER_MODES)}")
    bg = torch.as_tensor(background, dtype=torch.float32, device=origins.device)
    extras = () if mode == "rgb" else (mode,)
    out = render_field_rays(field, lod, origins, dirs, bg, extras, chunk)
    image = out["rgb"] if mode == "rgb" else out[mode]
    return image.reshape(height, width, -1).squeeze(-1) if image.ndim == 1 else image.reshape(height, width, 3)
