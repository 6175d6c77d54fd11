"""Names and ranges the whole tool set shares, each defined once: the render modes and their shader ids, and the
codebook bitwidths a user may ask for (owned by engine/limits.py; the viewer's sliders, `vbnf convert/compare/train --bits`).

The shader (shaders/field.frag) repeats the mode ids as GLSL constants; tests/test_colormap.py checks they match.
"""
from __future__ import annotations

from typing import Literal

from engine.limits import MAX_BITS, MIN_BITS  # the bits range's one owner is the file limits; re-exported here

RenderMode = Literal["rgb", "depth", "normal", "samples", "level"]
RENDER_MODES: tuple[str, ...] = ("rgb", "depth", "normal", "samples", "level")
"""What a render returns: rgb [H,W,3] in [0,1]; depth [H,W] in world units (0: no hit); normal [H,W,3] weighted unit
normals; samples [H,W] samples taken per ray; level [H,W] the finest octree level reached (-1: empty)."""
MODE_IDS: dict[str, int] = {mode: i for i, mode in enumerate(RENDER_MODES)}
"""Render mode -> the integer the shader's `mode_a`/`mode_b` uniforms take."""

BITS_RANGE = range(MIN_BITS, MAX_BITS + 1)
"""Codebook bitwidths b (2^b rows) the tools accept, inclusive: the file's limit, 1..16, everywhere a user picks one."""
