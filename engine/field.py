"""The neural field in its two forms.

- `NeuralField` (training form): torch module with the octree, a `FeatureGrid` and the decoder parameters.
- `InferenceField` (the contract between trainer, file, renderers and viewer): a plain dataclass of tensors, free of
  training state. `NeuralField.freeze()` produces one at any moment; the file reader produces one from any prefix.

Space: world points x map to the unit cube by u = (x - scene_center) / (2 * scene_half_size) + 0.5.
LOD k uses feature levels 0..k; feature level k lives at octree level `base_level + k`.
"""
from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field
from typing import Callable

import torch
from torch import nn

from engine.decoder import decode, decode_density, decoder_shapes, init_decoder
from engine.grids import Bits, FeatureGrid, GridKind, LevelRows
from engine.octree import Octree, cell_corners, trilinear_weights

FieldFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""(unit points [M,3], cell indices [levels, M] from `descend`, unit dirs [M,3]) -> (sigma [M], rgb [M,3]).
A function with the attribute `needs_cells = False` finds the cells itself and is passed None instead. One with the
attribute `density` ((points, cell indices) -> sigma [M]) gives the density alone, without the colour branch (the
renderer's pass that finds the hidden samples uses it)."""

FeatureLookup = Callable[[torch.Tensor, Octree, list[torch.Tensor], list[torch.Tensor], int, int], torch.Tensor]
"""(unit points [M,3], octree, corners per LOD, tables per LOD, base_level, lod) -> features [M,F]: the sum over LOD
0..lod of each LOD's trilinear corner features, cells found by the lookup itself (engine.cuda.grid_features has the
CUDA one and its torch twin). This module never imports engine.cuda: the trainer chooses and passes the lookup."""


@dataclass
class InferenceField:
    """Everything a renderer needs; tensors only (all on one device).

    scene_center: float [3] world units; scene_half_size: half the bounding cube's edge, world units.
    octree: occupancy of levels 0..base_level + len(levels) - 1.
    base_level: octree level of LOD 0.
    levels: feature rows of LOD 0..max_lod (a file prefix may hold fewer than `n_lods`).
    corners: per held LOD, int32 [n_cells, 8]: the corner-table row of each corner of each occupied cell.
    decoder: the decoder's tensors (see engine/decoder.py), float32.
    grid_kind: dense | vq | random | kmeans.
    n_lods: LODs of the complete model (fixes the ray-marching step, so a prefix renders with the same samples).
    metadata: free-form facts from the file (provenance, metrics); not used for rendering.
    """

    scene_center: torch.Tensor
    scene_half_size: float
    octree: Octree
    base_level: int
    levels: list[LevelRows]
    corners: list[torch.Tensor]
    decoder: dict[str, torch.Tensor]
    grid_kind: GridKind
    n_lods: int
    metadata: dict = dataclass_field(default_factory=dict)

    @property
    def max_lod(self) -> int:
        """Finest LOD this field holds."""
        return len(self.levels) - 1

    @property
    def feature_dim(self) -> int:
        return int(self.decoder["w0"].shape[0])

    @property
    def bits(self) -> int | None:
        """The codebook bitwidth of the finest level held (None for dense features). Levels may have bits of their
        own (`level_bits`); the finest, which holds most corners, names the model."""
        return self.levels[-1].bits if self.levels else None

    @property
    def level_bits(self) -> list[int | None]:
        """Per held level, its codebook bitwidth (None for dense features)."""
        return [r.bits for r in self.levels]

    @property
    def device(self) -> torch.device:
        return self.decoder["w0"].device

    def to(self, device: torch.device | str) -> "InferenceField":
        return InferenceField(
            self.scene_center.to(device), self.scene_half_size, self.octree.to(device), self.base_level,
            [LevelRows(*(None if t is None else t.to(device) for t in (r.codebook, r.indices, r.features)), r.bits)
             for r in self.levels],
            [c.to(device) for c in self.corners], {k: v.to(device) for k, v in self.decoder.items()},
            self.grid_kind, self.n_lods, dict(self.metadata))

    def truncated(self, max_lod: int) -> "InferenceField":
        """The coarser field holding LOD 0..max_lod only."""
        max_lod = max(0, min(max_lod, self.max_lod))
        return InferenceField(self.scene_center, self.scene_half_size,
                              self.octree.truncated(self.base_level + max_lod), self.base_level,
                              self.levels[: max_lod + 1], self.corners[: max_lod + 1], self.decoder,
                              self.grid_kind, self.n_lods, dict(self.metadata))

    def field_fn(self, lod: int) -> FieldFn:
        """(unit points [M,3], cell indices [levels, M], unit dirs [M,3]) -> (sigma [M], rgb [M,3]) at `lod`."""
        tables = [r.table() for r in self.levels[: lod + 1]]
        return make_field_fn(tables, self.corners, self.decoder, self.base_level, lod)


def feature_from_cells(tables: list[torch.Tensor], corners: list[torch.Tensor], base_level: int, lod: int,
                       points: torch.Tensor, cell_index: torch.Tensor) -> torch.Tensor:
    """Sum over LOD 0..lod of the trilinear interpolation of each level's corner features.

    tables: per LOD float [n_corners, F]; corners: per LOD int32 [n_cells, 8];
    points: float [M,3] unit cube; cell_index: int64 [>= base_level + lod + 1, M] from `octree.descend`.
    Returns float [M,F].
    """
    feature = None
    for k in range(lod + 1):
        level = base_level + k
        _, weights = trilinear_weights(points, level)  # [M,8]
        rows = corners[k][cell_index[level]].long().reshape(-1)  # [M*8]
        # index_select: its backward is an atomic index_add, not the sort that advanced indexing's backward does
        corner_f = torch.index_select(tables[k], 0, rows).reshape(weights.shape[0], 8, tables[k].shape[1])
        f = torch.einsum("mc,mcf->mf", weights, corner_f)
        feature = f if feature is None else feature + f
    return feature


def make_field_fn(tables: list[torch.Tensor], corners: list[torch.Tensor], decoder: dict[str, torch.Tensor],
                  base_level: int, lod: int) -> FieldFn:
    def field_fn(points: torch.Tensor, cell_index: torch.Tensor, dirs: torch.Tensor):
        return decode(decoder, feature_from_cells(tables, corners, base_level, lod, points, cell_index), dirs)

    def density(points: torch.Tensor, cell_index: torch.Tensor) -> torch.Tensor:
        return decode_density(decoder, feature_from_cells(tables, corners, base_level, lod, points, cell_index))[0]
    field_fn.density = density
    return field_fn


class NeuralField(nn.Module):
    """Training form: octree + trainable grid + decoder.

    octree: levels 0..base_level + n_lods - 1 (moved with the module's device by `.to()` of this class).
    """

    def __init__(self, octree: Octree, base_level: int, kind: GridKind, feature_dim: int = 16,
                 bits: Bits | None = None, scene_center: torch.Tensor | None = None, scene_half_size: float = 1.5,
                 seed: int = 0, codebook_std: float = 0.1):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.octree = octree
        self.base_level = base_level
        self.n_lods = octree.max_level - base_level + 1
        if self.n_lods < 1:
            raise ValueError(f"base level {base_level} is finer than the octree's finest level {octree.max_level}")
        self.corners = [cell_corners(octree, base_level + k)[1] for k in range(self.n_lods)]
        n_corners = [int(c.max()) + 1 if c.numel() else 0 for c in self.corners]
        self.grid = FeatureGrid(kind, n_corners, feature_dim, bits, codebook_std=codebook_std, generator=gen)
        self.decoder = nn.ParameterDict({k: nn.Parameter(v) for k, v in init_decoder(feature_dim, gen).items()})
        self.register_buffer("scene_center", (scene_center if scene_center is not None else torch.zeros(3)).float())
        self.scene_half_size = float(scene_half_size)

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        device = self.scene_center.device
        self.octree = self.octree.to(device)
        self.corners = [c.to(device) for c in self.corners]
        return self

    @property
    def kind(self) -> GridKind:
        return self.grid.kind

    def corner_tables(self, lod: int, soft: bool = False) -> list[torch.Tensor]:
        """Per LOD 0..lod, float [n_corners_k, F]: every corner's feature (FeatureGrid.corner_features)."""
        return [self.grid.corner_features(k, soft) for k in range(lod + 1)]

    def field_fn(self, lod: int, lookup: FeatureLookup | None = None, soft: bool = False,
                 tables: list[torch.Tensor] | None = None) -> FieldFn:
        """The field at `lod` for `render_rays`. lookup: None for the torch lookup (`feature_from_cells` on the
        renderer's cells); or a FeatureLookup that descends the octree itself (the trainer passes the fused CUDA
        one, engine.cuda.grid_features.grid_features, on a GPU): the function then ignores cell indices, has
        `needs_cells` False and, with that kernel, gives no gradient with respect to the points.
        soft: see FeatureGrid.corner_features. tables: `corner_tables(lod, soft)` made by the caller (the trainer
        reads their gradients)."""
        tables = self.corner_tables(lod, soft) if tables is None else tables
        if lookup is None:
            return make_field_fn(tables, self.corners, dict(self.decoder), self.base_level, lod)
        decoder, octree, corners, base_level = dict(self.decoder), self.octree, self.corners, self.base_level

        def field_fn(points: torch.Tensor, cell_index: torch.Tensor | None, dirs: torch.Tensor):
            return decode(decoder, lookup(points, octree, corners, tables, base_level, lod), dirs)

        def density(points: torch.Tensor, cell_index: torch.Tensor | None) -> torch.Tensor:
            return decode_density(decoder, lookup(points, octree, corners, tables, base_level, lod))[0]
        field_fn.needs_cells = False
        field_fn.density = density
        return field_fn

    def freeze(self, metadata: dict | None = None) -> InferenceField:
        """The inference form now: argmax indices instead of logits, detached copies."""
        with torch.no_grad():
            return InferenceField(
                self.scene_center.detach().clone(), self.scene_half_size, self.octree, self.base_level,
                [self.grid.export_level(k) for k in range(self.n_lods)], list(self.corners),
                {k: v.detach().clone() for k, v in self.decoder.items()}, self.grid.kind, self.n_lods,
                dict(metadata or {}))


def check_decoder(decoder: dict[str, torch.Tensor], feature_dim: int) -> None:
    """Raises ValueError naming the first decoder tensor whose shape is not the fixed architecture's."""
    for name, shape in decoder_shapes(feature_dim).items():
        if name not in decoder or tuple(decoder[name].shape) != shape:
            got = tuple(decoder[name].shape) if name in decoder else None
            raise ValueError(f"decoder tensor {name}: expected shape {shape}, got {got}")
