"""The GL resources on their own (a standalone EGL context, no window): the fullscreen pass and its numpy twin
(engine/colormap.py, used by `vbnf render` and `vbnf compare`) agree pixel by pixel in every render mode."""
from __future__ import annotations

import moderngl
import numpy as np
import pytest

from engine.colormap import compose_split, display_rgb, to_uint8
from viewer.gl_resources import FieldPass, FieldTexture, OffscreenTarget, SideImage


@pytest.fixture(scope="module")
def ctx():
    context = moderngl.create_standalone_context(backend="egl", require=330)
    yield context
    context.release()


def _values(mode: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    if mode == "rgb":
        return rng.random((h, w, 3), dtype=np.float32)
    if mode == "normal":
        n = rng.normal(size=(h, w, 3)).astype(np.float32)
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        return n * rng.random((h, w, 1), dtype=np.float32)  # weighted by opacity
    if mode == "depth":
        v = rng.uniform(2.0, 6.0, (h, w)).astype(np.float32)
        v[::5] = 0.0  # rays that hit nothing
        return v
    if mode == "samples":
        return rng.integers(0, 120, (h, w)).astype(np.float32)
    v = rng.integers(-1, 6, (h, w)).astype(np.float32)  # level, -1: empty
    return v


RANGES = {"rgb": (0.0, 1.0), "normal": (0.0, 1.0), "depth": (2.5, 5.5), "samples": (0.0, 100.0), "level": (0.0, 5.0)}


@pytest.mark.parametrize("rgb8", [False, True], ids=["float", "rgb8"])
@pytest.mark.parametrize("mode", list(RANGES))
def test_shader_equals_its_numpy_twin(ctx, mode, rgb8):
    rng = np.random.default_rng(0)
    h, w = 24, 32
    values = _values(mode, h, w, rng)
    background = (0.2, 0.4, 0.9)
    texture = FieldTexture(ctx)
    field_pass = FieldPass(ctx)
    target = OffscreenTarget(ctx, w, h)
    try:
        texture.write(values, mode, rgb8=rgb8)  # rgb8: what the CPU path uploads (a quarter of the bytes)
        assert texture.size == (w, h)
        assert texture.texture.dtype == ("f1" if rgb8 and mode == "rgb" else "f4")
        target.use()
        field_pass.render(SideImage(texture, mode, RANGES[mode]), background, viewport=(0, 0, w, h))
        gl = target.read()
    finally:
        target.release()
        field_pass.release()
        texture.release()
    expected = to_uint8(display_rgb(values, mode, RANGES[mode], background))
    assert np.abs(gl.astype(int) - expected.astype(int)).max() <= 1


def test_split_pass_equals_compose_split(ctx):
    rng = np.random.default_rng(1)
    h, w = 16, 40
    a, b = rng.random((h, w, 3), dtype=np.float32), rng.random((h, w, 3), dtype=np.float32)
    ta, tb, field_pass, target = FieldTexture(ctx), FieldTexture(ctx), FieldPass(ctx), OffscreenTarget(ctx, w, h)
    try:
        ta.write(a, "rgb")
        tb.write(b, "rgb")
        target.use()
        field_pass.render(SideImage(ta, "rgb", (0, 1)), (1, 1, 1), SideImage(tb, "rgb", (0, 1)), 0.3, (0, 0, w, h))
        gl = target.read()
    finally:
        for r in (target, field_pass, ta, tb):
            r.release()
    expected = compose_split(to_uint8(a), to_uint8(b), 0.3)
    assert np.abs(gl.astype(int) - expected.astype(int)).max() <= 1


def test_texture_resize_is_a_no_op_when_the_size_is_unchanged(ctx):
    texture = FieldTexture(ctx, 8, 4)
    glo = texture.texture.glo
    texture.resize(8, 4)
    assert texture.texture.glo == glo  # same GL object: a CUDA registration would stay valid
    texture.resize(16, 4)
    assert texture.size == (16, 4)
    texture.write(np.zeros((4, 16, 3), np.float32), "rgb", rgb8=True)
    texture.resize(16, 4)  # the float format again (what a CUDA path registers): a new texture
    assert texture.texture.dtype == "f4"
    texture.release()
