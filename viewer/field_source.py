"""The model as the viewer holds it: the file's bytes and layout, the field at the chosen bitwidth and byte budget,
and the latest live-training snapshot. Every field handed out has a version number that changes exactly when the
field does (render jobs are keyed by it).

Only engine public functions are used: engine.fileformat (load_model_bytes, model_layout, expected_chunks) and
engine.convert (convert_bits, imported when first needed). The layout of a field that is not the file (another
bitwidth, a live snapshot) is worked out from its chunk sizes (`layout_from_field`), never by serialising it: the
frame asks for it, and a serialisation costs a frame.
"""
from __future__ import annotations

import itertools
import json
import os
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from engine.errors import VbnfError
from engine.field import InferenceField
from engine import decoder as decoder_arch
from engine.fileformat import (CHUNK_OVERHEAD, DECODER_ARCHITECTURE, FORMAT_VERSION, HEADER_BYTES, ChunkInfo, ModelLayout,
                               expected_chunks, load_model_bytes, model_layout, read_model_file)

_versions = itertools.count(1)
PSNR_SPLITS = ("test_per_lod", "val_per_lod", "train_per_lod")


@dataclass
class Versioned:
    """A field and its version number."""

    field: InferenceField
    version: int


def lod_psnr(metadata: dict) -> dict[int, float]:
    """Per-LOD PSNR (dB) from a model's metadata metrics (`vbnf eval --store`): the test split when present, else
    val, else train; {} when the file has none."""
    metrics = metadata.get("metrics") or {}
    for key in PSNR_SPLITS:
        rows = metrics.get(key)
        if isinstance(rows, list):
            out = {}
            for row in rows:
                try:
                    out[int(row["lod"])] = float(row["psnr"])
                except (KeyError, TypeError, ValueError):
                    continue
            if out:
                return out
    return {}


def layout_from_field(field: InferenceField, metadata: dict | None = None, stored: ModelLayout | None = None
                      ) -> ModelLayout:
    """The layout `save_model(field, metadata)` would write, from the chunk sizes (engine.fileformat.expected_chunks)
    and the compressed metadata JSON alone: no tensor is serialised (a few hundred microseconds for any model).

    stored: the layout of a file whose octree `field` has (same node counts: a conversion or prefix of that file,
    a live snapshot that pruned nothing); its octree chunks' stored (compressed) lengths are used. Then
    lod_prefix_bytes and total_bytes are exact for the file save_model writes; without it the octree chunks count
    uncompressed, an upper bound."""
    base = field.base_level
    held = len(field.levels)
    nodes = [int(field.octree.cells[l].numel()) for l in range(base + held)]
    levels = []
    for k, rows in enumerate(field.levels):
        bits = None if rows.features is not None else rows.bits
        levels.append({"lod": k, "octree_level": base + k, "bits": bits, "feature_width": field.feature_dim,
                       "cells": nodes[base + k], "corners": rows.n_corners,
                       "codebook_rows": 0 if bits is None else 1 << bits})
    grid = {"kind": field.grid_kind, "base_level": base, "n_lods": field.n_lods, "feature_width": field.feature_dim,
            "octree_nodes": nodes, "levels": levels}
    same_octree = stored is not None and stored.structure["grid"]["octree_nodes"][:len(nodes)] == nodes
    stored_octree = {c.lod: c for c in stored.chunks if c.kind == "octree"} if same_octree else {}
    chunks = []  # (kind, lod, stored length, coding)
    for kind, lod, length in expected_chunks(grid):
        known = stored_octree.get(lod) if kind == "octree" else None
        chunks.append((kind, lod, length, "raw") if known is None else (kind, lod, known.length, known.coding))
    structure = {
        "scene": {"center": [float(v) for v in field.scene_center.detach().cpu().reshape(-1)],
                  "half_size": float(field.scene_half_size)},
        "decoder": {"architecture": DECODER_ARCHITECTURE, "feature_dim": field.feature_dim,
                    "hidden": decoder_arch.HIDDEN, "geo_dim": decoder_arch.GEO_DIM,
                    "dir_freqs": decoder_arch.DIR_FREQS, "dtype": "float16"},
        "grid": grid,
        "chunks": [{"kind": kind, "lod": lod, "length": length, **({} if coding == "raw" else {"coding": coding})}
                   for kind, lod, length, coding in chunks],
    }
    user = {**field.metadata, **(metadata or {})}
    meta = zlib.compress(json.dumps({"structure": structure, "metadata": user}, separators=(",", ":")).encode(), 9)
    offset = HEADER_BYTES + CHUNK_OVERHEAD + len(meta)
    infos = [ChunkInfo("metadata", None, HEADER_BYTES, len(meta), offset)]
    prefix: list[int] = []
    for kind, lod, length, coding in chunks:
        end = offset + CHUNK_OVERHEAD + length
        infos.append(ChunkInfo(kind, lod, offset, length, end, coding))
        offset = end
        if lod is not None:
            if lod == len(prefix):
                prefix.append(end)
            prefix[lod] = end
    return ModelLayout(version=FORMAT_VERSION, byte_order="little", grid_kind=field.grid_kind, base_level=base,
                       n_lods=field.n_lods, feature_dim=field.feature_dim, bits=[lv["bits"] for lv in levels],
                       structure=structure, metadata=user, chunks=infos, lod_prefix_bytes=prefix,
                       total_bytes=offset, available_bytes=offset, complete_lods=len(prefix))


class FieldSource:
    """One opened model. `open()` builds a new one (so a failure leaves the caller's current source untouched)."""

    def __init__(self, path: Path, data: bytes, layout: ModelLayout, full: InferenceField):
        self.path = path
        self.data = data
        self.layout = layout
        self.full = Versioned(full, next(_versions))
        self.live: Versioned | None = None
        self._fields: dict[tuple[int | None, int], Versioned] = {}
        self._layouts: dict[int, ModelLayout] = {}
        self._pending: dict[tuple[int | None, int], Future] = {}
        """Fields being made by the preparing thread (`prepared`), by the key of `_fields`."""
        self._preparer: ThreadPoolExecutor | None = None
        self._waiting: set[tuple[int | None, int]] = set()
        """Keys `prepared` answered None for since `begin_frame`: the frame shows an older field than it asked for."""
        self._last_shown = self.full

    @classmethod
    def open(cls, path: str | os.PathLike) -> "FieldSource":
        """Reads a .vbnf file; FormatError/VbnfError (one line naming the path) when it cannot be used."""
        path = Path(path)
        data = read_model_file(path)
        # A partial file (a prefix holding at least LOD 0) opens like everywhere else: its complete LODs load and the
        # TruncatedModelWarning ("partial: A of B bytes, k of n LODs present") is passed on (`vbnf` prints it as a
        # one-line note).
        full = load_model_bytes(data, source=str(path))  # validates everything; errors name the path
        return cls(path, data, model_layout(data), full)

    # -- facts -----------------------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def trained_bits(self) -> int | None:
        """The stored codebook bitwidth (None for a dense grid)."""
        return self.full.field.bits

    @property
    def file_bytes(self) -> int:
        return len(self.data)

    def lods_in_budget(self, budget: int | None) -> int:
        """Complete LODs within the first `budget` bytes of the file (all of them for None)."""
        held = self.layout.complete_lods  # fewer than stored when the file is a prefix
        if budget is None:
            return held
        return min(held, sum(1 for p in self.layout.lod_prefix_bytes if p <= budget))

    def layout_of(self, shown: Versioned) -> ModelLayout:
        """The file layout `shown` would have if saved (the stored file's own for the stored field): its bitrate
        ladder (`lod_prefix_bytes`) and size (`total_bytes`), from its chunk sizes (no serialisation). Cached per
        field version."""
        if shown.version == self.full.version:
            return self.layout
        if shown.version not in self._layouts:
            if len(self._layouts) > 32:  # live snapshots come every second: keep the cache small
                self._layouts.clear()
            self._layouts[shown.version] = layout_from_field(shown.field, stored=self.layout)
        return self._layouts[shown.version]

    def size_at(self, bits: int | None) -> int:
        """Bytes of the whole model at `bits` (None: as stored)."""
        return self.layout_of(self.converted(bits, None)).total_bytes

    # -- fields ----------------------------------------------------------------------------------------------------

    def _normalise_bits(self, bits: int | None) -> int | None:
        return None if bits is None or bits == self.trained_bits or self.trained_bits is None else int(bits)

    def is_stored(self, bits: int | None) -> bool:
        """Whether `shown(bits, ...)` is (a prefix of) the file's own field, so the file's stored metrics apply."""
        return self.live is None and self._normalise_bits(bits) is None

    def converted(self, bits: int | None, budget: int | None) -> Versioned:
        """The file's field at `bits` (None: as stored), from the first `budget` bytes (None: all of them).

        The prefix is read with load_model_bytes on those bytes only; a lower bitwidth merges codebook entries and a
        higher one splits them (engine.convert.convert_bits). Raises VbnfError when the budget holds no LOD.
        """
        bits = self._normalise_bits(bits)
        n = self.lods_in_budget(budget)
        if n == 0:
            need = self.layout.lod_prefix_bytes[0]
            raise VbnfError(f"the first {budget} bytes hold no complete LOD (LOD 0 needs {need} bytes); "
                            "raise the byte budget")
        key = (bits, n)
        if key not in self._fields:
            if bits is None:
                field = (self.full.field if n == self.layout.complete_lods else
                         load_model_bytes(self.data[:budget], max_bytes=budget, source=f"{self.name}[:{budget}]"))
            else:
                from engine.convert import convert_bits
                field = convert_bits(self.converted(None, budget).field, bits)
            self._fields[key] = (Versioned(field, self.full.version) if field is self.full.field
                                 else Versioned(field, next(_versions)))
        return self._fields[key]

    def prepared(self, bits: int | None, budget: int | None) -> Versioned | None:
        """`converted(bits, budget)` without waiting for it: the field when it is ready; otherwise None, while a
        thread of this source makes it (reading a prefix, converting a bitwidth: milliseconds to seconds, never on
        the frame). Raises, like `converted`, a budget that holds no LOD, and the error of a failed conversion."""
        n = self.lods_in_budget(budget)
        key = (self._normalise_bits(bits), n)
        future = self._pending.get(key)
        if future is None and (n == 0 or key in self._fields or key == (None, self.layout.complete_lods)):
            return self.converted(bits, budget)  # an error, a cached field or the file's own: no work
        if future is None:
            if self._preparer is None:
                self._preparer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vbnf-prepare")
            self._pending[key] = future = self._preparer.submit(self.converted, bits, budget)
        if not future.done():
            self._waiting.add(key)
            return None
        del self._pending[key]
        return future.result()

    def begin_frame(self) -> None:
        """Called by the frame before it asks for fields: `preparing` then tells whether this frame got them all."""
        self._waiting.clear()

    def preparing(self) -> bool:
        """Since `begin_frame`, `prepared` answered None (the view shows an older field than asked for), or a
        field is still being made in the background."""
        return bool(self._waiting) or any(not f.done() for f in self._pending.values())

    def shown(self, bits: int | None, budget: int | None) -> Versioned:
        """What the view renders: the live training snapshot when there is one, else `converted(bits, budget)` once
        it is ready and, until then, the field shown before (see `prepared`)."""
        if self.live is not None:
            return self.live
        ready = self.prepared(bits, budget)
        if ready is not None:
            self._last_shown = ready
        return self._last_shown

    def set_live(self, field: InferenceField | None) -> None:
        """Shows a training snapshot (None: back to the file)."""
        self.live = None if field is None else Versioned(field, next(_versions))


def open_other(path: str | os.PathLike, cache: dict[str, FieldSource]) -> FieldSource:
    """A second model for the comparison view, opened once per path."""
    key = os.fspath(path)
    if key not in cache:
        cache.clear()
        cache[key] = FieldSource.open(path)
    return cache[key]


class Models:
    """The model shown and the models opened for the comparison view."""

    def __init__(self) -> None:
        self.current: FieldSource | None = None
        """The model shown (None before the first successful open)."""
        self.others: dict[str, FieldSource] = {}
        """Comparison models by path (see `open_other`)."""

    def open(self, path: str | os.PathLike) -> FieldSource:
        """Opens `path` and makes it current; on any failure raises and keeps the current model."""
        return self.make_current(FieldSource.open(path))

    def make_current(self, source: FieldSource) -> FieldSource:
        """Shows `source` from now on (a model opened elsewhere, e.g. on a worker thread)."""
        self.current = source
        return source

    def preparing(self) -> bool:
        """A field of the current model is being made in the background (FieldSource.prepared; comparison models
        show their whole file)."""
        return self.current is not None and self.current.preparing()
