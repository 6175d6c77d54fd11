"""The one colormap: render values -> display colours, for `vbnf render`, `vbnf compare` and the viewer.

The viewer draws with shaders/field.frag, the GLSL twin of this module: tests/test_colormap.py checks that the
shader's turbo coefficients and mode ids are these, and tests/test_viewer_gl.py that both give the same pixels.
Values follow engine/render.render_image: [H,W,3] for rgb and normal, [H,W] for depth, samples and level.
Scalar modes map a range fixed by the view and the model (`value_range`), so the same view gives the same colours
in every tool.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from engine.modes import MODE_IDS  # noqa: F401  (the shader's mode ids, next to the colours they pick)
from engine.render import field_step

DIVIDER_RGB = (1.0, 0.8, 0.1)

# Turbo colormap, polynomial approximation (Google, Apache-2.0): the same numbers as `turbo` in shaders/field.frag.

_KR4 = np.array([0.13572138, 4.61539260, -42.66032258, 132.13108234])
_KG4 = np.array([0.09140261, 2.19418839, 4.84296658, -14.18503333])
_KB4 = np.array([0.10667330, 12.64194608, -60.58204836, 110.36276771])
_KR2 = np.array([-152.94239396, 59.28637943])
_KG2 = np.array([4.27729857, 2.82956604])
_KB2 = np.array([-89.90310912, 27.34824973])


def turbo(x: np.ndarray) -> np.ndarray:
    """float [...] -> float32 [...,3] in [0,1]: the shader's polynomial turbo colormap."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    v4 = np.stack([np.ones_like(x), x, x * x, x * x * x], -1)
    v2 = v4[..., 2:4] * v4[..., 2:3]
    rgb = np.stack([v4 @ _KR4 + v2 @ _KR2, v4 @ _KG4 + v2 @ _KG2, v4 @ _KB4 + v2 @ _KB2], -1)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def value_range(mode: str, camera_distance: float, scene_half_size: float, step: float, finest_level: int
                ) -> tuple[float, float]:
    """The range a scalar mode maps onto the colormap; a function of the view and the model only, so both sides
    of a comparison and every refinement of an image use the same colours.

    depth: the scene cube's nearest and farthest possible distance (world units); samples: 0 .. the cube's edge in
    ray-marching steps; level: 0 .. the model's finest octree level. rgb/normal: (0, 1), unused.
    """
    if mode == "depth":
        reach = scene_half_size * math.sqrt(3.0)
        return max(camera_distance - reach, 0.0), camera_distance + reach
    if mode == "samples":
        return 0.0, max(2.0 * scene_half_size / step, 1.0)
    if mode == "level":
        return 0.0, float(max(finest_level, 1))
    return 0.0, 1.0


def field_value_range(field, mode: str, eye) -> tuple[float, float]:
    """value_range for an InferenceField seen from `eye` (float [3], world units): the range every tool uses."""
    centre = field.scene_center.detach().double().cpu()
    distance = float((torch.as_tensor(eye).detach().double().cpu() - centre).norm())
    return value_range(mode, distance, field.scene_half_size, field_step(field), field.base_level + field.n_lods - 1)


def display_rgb(values: np.ndarray, mode: str, value_range_: tuple[float, float],
                background: tuple[float, float, float]) -> np.ndarray:
    """Render values -> float32 [H,W,3] display colours in [0,1], exactly as the shader's `shade`."""
    bg = np.asarray(background, dtype=np.float32)
    v = np.asarray(values, dtype=np.float32)
    if mode == "rgb":
        return np.clip(v[..., :3], 0.0, 1.0)
    if mode == "normal":
        length = np.linalg.norm(v[..., :3], axis=-1, keepdims=True)
        n = np.where(length > 1e-6, v[..., :3] / np.maximum(length, 1e-6), 0.0)
        t = np.minimum(length, 1.0)
        return np.clip(bg * (1.0 - t) + (n * 0.5 + 0.5) * t, 0.0, 1.0).astype(np.float32)
    s = v if v.ndim == 2 else v[..., 0]
    lo, hi = value_range_
    x = (s - lo) / max(hi - lo, 1e-6)
    if mode == "depth":
        x = 1.0 - x
    rgb = turbo(x)
    empty = (s <= 0.0) if mode == "depth" else (s < 0.0) if mode == "level" else np.zeros(s.shape, bool)
    rgb[empty] = bg
    return rgb


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """float [...,3] in [0,1] -> uint8, rounding as GL's unsigned-normalised conversion does."""
    return np.clip(np.rint(np.asarray(rgb, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def compose_split(a: np.ndarray, b: np.ndarray, divider: float) -> np.ndarray:
    """Two display images [H,W,3] (same shape, any dtype) -> A left of the divider, B right of it, with the
    shader's 2-pixel divider line. divider: fraction of the width."""
    if a.shape != b.shape:
        raise ValueError(f"compose_split: sides differ in shape, {a.shape} vs {b.shape}")
    w = a.shape[1]
    centers = np.arange(w) + 0.5
    out = np.where((centers / w >= divider)[None, :, None], b, a).copy()
    line = np.abs(centers - divider * w) < 1.0
    scale = 255 if out.dtype == np.uint8 else 1.0
    out[:, line] = (np.asarray(DIVIDER_RGB) * scale).astype(out.dtype) if scale == 1.0 else to_uint8(DIVIDER_RGB)
    return out
