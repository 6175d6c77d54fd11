"""GL resources of the viewer, one small class per role. Each takes the moderngl context, creates its objects in
__init__, and frees them in release() (called before the context goes).

- FieldTexture: a texture holding one field image (render values, not colours); the CPU path uploads into it
  (`texels` packs the values, on the render thread), a CUDA path writes into `.texture` through interop.
- FieldPass: the fullscreen pass (shaders/field.vert + field.frag) that colour-maps one or two field textures and
  draws the comparison divider.
- OffscreenTarget: an RGBA8 framebuffer to draw the pass into without a window (screenshots, saved comparisons).
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

import moderngl
import numpy as np

from engine.colormap import to_uint8
from engine.modes import MODE_IDS

SHADER_DIR = files("viewer") / "shaders"  # the repo's top-level shaders/, shipped as package data of viewer


def texels(values: np.ndarray, mode: str, rgb8: bool = False) -> np.ndarray:
    """Render values -> the RGBA texels FieldTexture.upload takes: float32 [H,W,4] (scalar modes keep their value
    in red), or uint8 [H,W,4] for rgb when `rgb8` (what the screen shows anyway: a quarter of the bytes to upload,
    and Mesa's software rasteriser samples it several times faster than float)."""
    v = np.asarray(values, dtype=np.float32)
    h, w = v.shape[:2]
    if rgb8 and mode == "rgb" and v.ndim == 3:
        rgba = np.full((h, w, 4), 255, np.uint8)
        rgba[..., :3] = to_uint8(v[..., :3])
        return rgba
    rgba = np.zeros((h, w, 4), np.float32)
    if v.ndim == 2:
        rgba[..., 0] = v
    else:
        rgba[..., : v.shape[2]] = v[..., :4]
    rgba[..., 3] = 1.0
    return rgba


class FieldTexture:
    """RGBA texture, row 0 = the image's top row: float32 (scalar modes keep their value in the red channel; the
    CUDA path's format), or RGBA8 for rgb images uploaded from the CPU (`texels(..., rgb8=True)`)."""

    def __init__(self, ctx: moderngl.Context, width: int = 1, height: int = 1):
        self.ctx = ctx
        self.texture = self._create(width, height, "f4")

    def _create(self, width: int, height: int, dtype: str) -> moderngl.Texture:
        tex = self.ctx.texture((width, height), 4, dtype=dtype)
        tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
        tex.repeat_x = tex.repeat_y = False
        return tex

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.texture.size

    def resize(self, width: int, height: int, dtype: str = "f4") -> None:
        """Reallocates for a new size or texel type ("f4" or "f1"); a no-op when both are unchanged (a CUDA path
        re-registers after a change)."""
        if (width, height) == self.size and self.texture.dtype == dtype:
            return
        self.texture.release()
        self.texture = self._create(width, height, dtype)

    def write(self, values: np.ndarray, mode: str, rgb8: bool = False) -> None:
        """Uploads render values: float [H,W,3] (rgb, normal) or [H,W] (depth, samples, level)."""
        self.upload(texels(values, mode, rgb8), mode)

    def upload(self, rgba: np.ndarray, mode: str) -> None:
        """Uploads texels made by `texels` (uint8 or float32 [H,W,4]) for an image of render mode `mode`."""
        h, w = rgba.shape[:2]
        self.resize(w, h, "f1" if rgba.dtype == np.uint8 else "f4")
        self.set_filter(mode)
        self.texture.write(np.ascontiguousarray(rgba))

    def set_filter(self, mode: str) -> None:
        """Linear for rgb and normal; nearest for colour-mapped values (a level of -1, "empty", must not be
        interpolated across an object's edge)."""
        smooth = mode in ("rgb", "normal")
        self.texture.filter = (moderngl.LINEAR, moderngl.LINEAR) if smooth else (moderngl.NEAREST, moderngl.NEAREST)

    def release(self) -> None:
        self.texture.release()  # a no-op when a render target released it already


@dataclass
class SideImage:
    """What one side of the fullscreen pass draws."""

    texture: FieldTexture
    """The values."""
    mode: str
    """Render mode of the values (picks the colormap)."""
    value_range: tuple[float, float]
    """Values mapped to the colormap's ends (scalar modes)."""


class FieldPass:
    """Fullscreen pass: colour-maps side A (and side B right of the divider) into the bound framebuffer."""

    def __init__(self, ctx: moderngl.Context, shader_dir: Traversable = SHADER_DIR):
        self.ctx = ctx
        self.program = ctx.program(vertex_shader=(shader_dir / "field.vert").read_text(),
                                   fragment_shader=(shader_dir / "field.frag").read_text())
        self.vao = ctx.vertex_array(self.program, [])
        self.program["field_a"] = 0
        self.program["field_b"] = 1

    def render(self, a: SideImage, background: tuple[float, float, float], b: SideImage | None = None,
               divider: float = 0.5, viewport: tuple[int, int, int, int] | None = None) -> None:
        """Draws into the currently bound framebuffer over `viewport` (x, y, width, height in pixels from the
        bottom-left; default: the whole framebuffer)."""
        x, y, width, height = viewport or (0, 0, *self.ctx.fbo.size)
        self.ctx.viewport = (x, y, width, height)
        a.texture.texture.use(0)
        (b or a).texture.texture.use(1)
        p = self.program
        p["mode_a"] = MODE_IDS[a.mode]
        p["range_a"] = tuple(map(float, a.value_range))
        p["mode_b"] = MODE_IDS[(b or a).mode]
        p["range_b"] = tuple(map(float, (b or a).value_range))
        p["background"] = tuple(map(float, background))
        p["divider"] = float(divider) if b is not None else -1.0
        p["viewport_size"] = (float(width), float(height))
        self.ctx.disable(moderngl.BLEND | moderngl.DEPTH_TEST)
        self.vao.render(moderngl.TRIANGLE_STRIP, vertices=4)

    def prime_variants(self) -> None:
        """Draws once with every pair of texture states the viewer binds (RGBA8 linear, float linear, float nearest
        on either side) into a 1x1 framebuffer, and waits. A software rasteriser (llvmpipe) compiles a shader
        variant for each such pair at its first draw, ~50 ms each on 2 cores; inside a frame that was the CPU path's
        longest frame (the first scalar mode, the first split view: docs/VIEWER.md). ~0.4 s, once, at start."""
        states = [("f1", "rgb"), ("f4", "normal"), ("f4", "depth")]
        textures = []
        for dtype, mode in states:
            texture = FieldTexture(self.ctx)
            texture.resize(1, 1, dtype)
            texture.set_filter(mode)
            textures.append(SideImage(texture, mode, (0.0, 1.0)))
        target = OffscreenTarget(self.ctx, 1, 1)
        previous = self.ctx.fbo
        try:
            target.use()
            for a in textures:
                for b in textures:
                    self.render(a, (0.0, 0.0, 0.0), b if b is not a else None)
            self.ctx.finish()
        finally:
            if previous is not None:  # a standalone context has no framebuffer bound before
                previous.use()
            target.release()
            for side in textures:
                side.texture.release()

    def release(self) -> None:
        self.vao.release()
        self.program.release()


class OffscreenTarget:
    """An RGBA8 framebuffer of a given size; `read()` returns its pixels top row first."""

    def __init__(self, ctx: moderngl.Context, width: int, height: int):
        self.ctx = ctx
        self.color = ctx.texture((width, height), 4)
        self.fbo = ctx.framebuffer(color_attachments=[self.color])

    @property
    def size(self) -> tuple[int, int]:
        return self.fbo.size

    def use(self) -> None:
        self.fbo.use()

    def read(self) -> np.ndarray:
        """uint8 [H,W,3], row 0 = top."""
        w, h = self.fbo.size
        data = self.fbo.read(components=3, alignment=1)
        return np.frombuffer(data, np.uint8).reshape(h, w, 3)[::-1].copy()

    def release(self) -> None:
        self.fbo.release()
        self.color.release()


def read_screen(ctx: moderngl.Context, size: tuple[int, int]) -> np.ndarray:
    """The window's framebuffer (`size` = its current width, height) as uint8 [H,W,3], row 0 = top.
    (moderngl's `ctx.screen.size` is the size at context creation, so the caller passes the current one.)"""
    w, h = size
    data = ctx.screen.read(viewport=(0, 0, w, h), components=3, alignment=1)
    return np.frombuffer(data, np.uint8).reshape(h, w, 3)[::-1].copy()
