"""Sample budgets: fixed sizes for the packed sample arrays of a training step, so that its renderer compacts samples
without waiting for the device (`torch.nonzero_static` instead of `nonzero`, which reads the count back).

A training step packs its samples three times (engine.render.render_rays): the samples inside the scene cube, those
in occupied cells of the step's LOD, and those still visible (skip_hidden). With sizes, each array has exactly that
many entries: the real ones first, in the order `nonzero` gives, then padding, each entry on a dummy ray of its own
(index R and up, dropped before the loss), so it receives no gradient. The counts of every step come back with its
loss (one read per `Trainer.step(n)` call), and the sizes follow them: the largest count seen for a LOD times `HEADROOM`. A step
whose count exceeds its size (an unusual batch) drops the samples past the end; the rays that lost samples are left
out of that step's loss (`render_rays` reports which rays are complete), and the size grows to the count times
`OVERFLOW_GROWTH` for the next call.
"""
from __future__ import annotations

import math

HEADROOM = 1.1
"""Size = this times the largest count seen (the counts of 16,384-ray batches vary by a few percent)."""
OVERFLOW_GROWTH = 1.3
"""After a step overflowed, its size becomes its count times this."""
KEEP_SPAN = 1.15
"""A size stays while it lies between HEADROOM and HEADROOM x KEEP_SPAN times the largest count (padding is work:
every padded entry runs the decoder)."""
ROUND_TO = 4096
"""Sizes are rounded up to a multiple of this, so the arrays keep their shapes (and the caching allocator its
blocks) while the counts drift."""

STAGES = ("inside", "occupied", "visible")
"""The three compactions of a training step, in the order of `render_rays`'s `sample_counts`."""


class SampleBudgets:
    """The sizes per LOD (the occupied and visible counts depend on the LOD's octree level; the inside count does
    not, but is kept per LOD too for one rule). No size is known for a LOD until one of its steps has run with
    exact compaction (`sizes` returns None: the renderer then uses `nonzero` once)."""

    def __init__(self):
        self._sizes: dict[int, tuple[int, int, int]] = {}

    def sizes(self, lod: int) -> tuple[int, int, int] | None:
        """(inside, occupied, visible) array sizes for a step at `lod`, or None when not measured yet."""
        return self._sizes.get(lod)

    def update(self, lod: int, counts: list[int], overflowed: bool) -> None:
        """Takes one chunk's largest counts at `lod` (host ints, STAGES order); `overflowed`: a step of that chunk
        had a count above its size."""
        factor = OVERFLOW_GROWTH if overflowed else HEADROOM
        new = tuple(max(ROUND_TO, math.ceil(c * factor / ROUND_TO) * ROUND_TO) for c in counts)
        old = self._sizes.get(lod)
        if old is not None and not overflowed:
            # a size within KEEP_SPAN of what the counts ask stays: fewer shape changes
            new = tuple(o if c * HEADROOM <= o <= c * HEADROOM * KEEP_SPAN else n for o, n, c in zip(old, new, counts))
        self._sizes[lod] = new

    def reset(self) -> None:
        """Forget every size (the octree changed: a prune)."""
        self._sizes.clear()
