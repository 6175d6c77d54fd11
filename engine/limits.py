"""The numeric limits a .vbnf model may reach, defined once. The file reader enforces them before it allocates
anything; the writer, the converter and the command line may refer to them (import the names, never copy the values).

All are plain constants (no knobs at run time). docs/FORMAT.md ("Limits and the memory bound") explains each.
"""
from __future__ import annotations

MAX_OCTREE_LEVEL = 20
"""Finest octree level a model may use (level l has 2^l cells per axis). Corner keys (2^l + 1)^3 and Morton codes
(3 l bits) must fit in int64; 20 is also far beyond what fits in memory as a dense level (8^20 cells)."""

MIN_BITS = 1
MAX_BITS = 16
"""Bits per codebook index a model may use, inclusive: 1 (2 rows) .. 16 (a codebook of 2^16 rows). The tools' --bits
options and the viewer's sliders take the same range (engine/modes.py re-exports it)."""

MAX_FEATURE_DIM = 1024
"""Widest feature row (F, floats per corner) the decoder may take."""

MAX_METADATA_BYTES = 1 << 24
"""Largest metadata JSON text (16 MiB, after inflating a compressed metadata chunk)."""

MAX_METADATA_DEPTH = 32
"""Deepest nesting of the free-form metadata JSON (what `vbnf info` prints recursively)."""

MAX_SCENE_COORD = 1e9
"""Largest magnitude of a scene-box number (center coordinates and half size), world units. Products of three such
numbers (1e27) stay finite in float32, so the ray-box and step arithmetic of the renderers cannot overflow."""

MIN_SCENE_HALF_SIZE = 1e-9
"""Smallest scene half size, world units. Products of three (1e-27) stay normal float32 numbers and 1 / half_size
stays finite, so mapping world points to the unit cube neither underflows to 0 nor divides by a denormal."""

MAX_CENTER_OVER_HALF_SIZE = 1e6
"""Largest |scene center coordinate| / half size: farther, a float32 ray point near the box would not resolve even a
coarse cell of it (the box shrinks to a point), which is never a real scene."""

LOAD_BYTES_PER_CELL = 160
"""Loader's peak working memory per occupied octree cell of the levels it builds (cell lists, child masks and
starts, corner tables and their temporaries), bytes; measured upper bound (tests/test_bad_files.py checks it)."""

LOAD_BYTES_PER_CORNER = 48
"""Loader's peak working memory per corner of a loaded LOD on top of its rows (sorted corner keys, inverse), bytes."""

LOAD_ALLOWANCE_BYTES = 64 << 20
"""Fixed allowance in the loader's memory bound (decoder, metadata JSON, small tables), bytes."""

LOAD_BYTES_PER_FILE_BYTE = 2048
"""The loader's memory bound: it refuses, before allocating, a file whose validated counts would need more than
LOAD_BYTES_PER_FILE_BYTE x (bytes it holds) + LOAD_ALLOWANCE_BYTES of working memory. Real models need at most a few
hundred (a 1-bit index costs an eighth of a byte on disk and about 40 bytes of tables in memory)."""
