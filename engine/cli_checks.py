"""Argument checks for the `vbnf` command line: argparse `type=` functions with ranges, and parsers for the
compound values (sizes, cameras, colours). Each failure is one line naming the value and the accepted range; argparse
adds the option's name (engine/cli.py prints it as "vbnf X: error: argument --steps: ..."). Checks that need the
loaded model or data set (an LOD against the model's LODs) live with the command and raise VbnfError.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable

# Plain ranges of the command line; the values a sane run can use, far from what a machine can hold.
MAX_STEPS = 10_000_000
MAX_BATCH = 1 << 24  # rays per step
MAX_OCTREE_LEVEL = 12  # finest octree level a field can be trained with (4096^3 cells)
MAX_IMAGE_SIDE = 16384  # pixels
MAX_FEATURE_DIM = 256
MIN_FOV, MAX_FOV = 1.0, 170.0  # degrees


def int_in(lo: int, hi: int | None = None, what: str = "an integer") -> Callable[[str], int]:
    """argparse type: an int in [lo, hi] (hi None: no upper bound)."""
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"{value} is out of range: must be {bound}")
        return value
    parse.__name__ = "int"
    return parse


def float_in(lo: float, hi: float, what: str = "a number", open_lo: bool = False) -> Callable[[str], float]:
    """argparse type: a finite float in [lo, hi] ((lo, hi] when open_lo)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        low_ok = value > lo if open_lo else value >= lo
        if not math.isfinite(value) or not low_ok or value > hi:
            raise argparse.ArgumentTypeError(
                f"{text} is out of range: must be {'>' if open_lo else '>='} {lo:g} and <= {hi:g}")
        return value
    parse.__name__ = "float"
    return parse


positive_int = int_in(1, None, "a positive integer")
non_negative_int = int_in(0, None, "a non-negative integer")
seed_int = int_in(0, 2**63 - 1, "a seed (non-negative integer)")
positive_float = float_in(0.0, 1e9, "a positive number", open_lo=True)


def image_size(text: str, lo: int = 1, hi: int = MAX_IMAGE_SIDE) -> tuple[int, int]:
    """'WIDTHxHEIGHT' -> (width, height), each side in [lo, hi]; ArgumentTypeError otherwise."""
    parts = str(text).lower().split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        width, height = int(parts[0], 10), int(parts[1], 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 800x600, got {text!r}") from None
    if not (lo <= width <= hi and lo <= height <= hi):
        raise argparse.ArgumentTypeError(f"{width}x{height}: each side must be between {lo} and {hi} pixels")
    return width, height


def float_list(text: str, counts: tuple[int, ...], what: str, lo: float = -math.inf, hi: float = math.inf
               ) -> list[float]:
    """'a,b,c' -> finite floats in [lo, hi], as many as one of `counts`; ArgumentTypeError naming `what`."""
    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        values = []
    if len(values) not in counts or not all(math.isfinite(v) for v in values):
        n = " or ".join(map(str, counts))
        raise argparse.ArgumentTypeError(f"expected {n} comma-separated finite numbers ({what}), got {text!r}")
    bad = [v for v in values if not lo <= v <= hi]
    if bad:
        raise argparse.ArgumentTypeError(f"{bad[0]:g} is out of range in {text!r}: {what} must be in [{lo:g}, {hi:g}]")
    return values


def colour(text: str) -> tuple[float, float, float]:
    """argparse type: 'r,g,b' with each in [0, 1]."""
    return tuple(float_list(text, (3,), "r,g,b", 0.0, 1.0))


def fov_degrees(text: str) -> float:
    """argparse type: a vertical field of view in degrees, in [MIN_FOV, MAX_FOV]."""
    return float_in(MIN_FOV, MAX_FOV, "a field of view in degrees")(text)
