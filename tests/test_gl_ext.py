"""engine.gl_ext without a GPU: GL functions resolved through eglGetProcAddress for moderngl's headless EGL context.

On Mesa's llvmpipe the whole GL half of interop "external" runs too: a memfd in the layout llvmpipe exports stands
in for the fd CUDA exports (GL_EXT_memory_object_fd import, buffer storage, GPU copy into a texture, fence).
"""
from __future__ import annotations

import hashlib
import mmap
import os
import struct

import numpy as np
import pytest

from engine import gl_ext
from engine.render_target import egl_context

PAGE = 4096


@pytest.fixture(scope="module")
def ctx():
    ctx, why = egl_context()
    if ctx is None:
        pytest.skip(why)
    yield ctx
    ctx.release()


@pytest.fixture()
def llvmpipe(ctx):
    if "llvmpipe" not in ctx.info.get("GL_RENDERER", "") or "GL_EXT_memory_object_fd" not in ctx.extensions:
        pytest.skip("needs Mesa's llvmpipe with GL_EXT_memory_object_fd")
    return ctx


def llvmpipe_memfd(data_bytes: int, tagged: bool = True) -> tuple[int, mmap.mmap]:
    """(fd, mapping of the data) for a memfd llvmpipe imports: a header {size_t size, size_t offset, 16 bytes of
    sha1(driver id)} then the data at `offset` (Mesa's os_memory_fd.c; the driver id is "llvmpipe" in release
    builds). tagged=False leaves the header out, which llvmpipe's import rejects."""
    fd = os.memfd_create("gl_ext_test")
    total = PAGE + data_bytes
    os.ftruncate(fd, total)
    if tagged:
        os.pwrite(fd, struct.pack("<QQ", total, PAGE) + hashlib.sha1(b"llvmpipe").digest()[:16], 0)
    keep = os.dup(fd)  # the import consumes fd
    try:
        return fd, mmap.mmap(keep, total)
    finally:
        os.close(keep)


def test_unresolved_function_is_a_one_line_error():
    gl = gl_ext.GLExt(lambda name: None)
    with pytest.raises(RuntimeError, match="glFenceSync is not available"):
        gl.fence_sync()
    with pytest.raises(ValueError, match="no prototype"):
        gl.fn("glDrawArrays")


def test_fence_round_trip(ctx):
    gl = gl_ext.current()
    assert gl_ext.current() is gl  # resolved once per loader
    texture = ctx.texture((4, 4), 4, dtype="f1")
    texture.write(bytes(64))  # some GL work before the fence
    fence = gl.fence_sync()
    status = gl.client_wait_sync(fence, gl_ext.GL_SYNC_FLUSH_COMMANDS_BIT, 10**9)
    assert status in (gl_ext.GL_ALREADY_SIGNALED, gl_ext.GL_CONDITION_SATISFIED)
    gl.delete_sync(fence)
    gl.finish_fence(gl.fence_sync())
    buffer = gl.create_buffer()
    gl.delete_buffer(buffer)
    texture.release()
    assert gl.get_error() == 0


def test_imported_buffer_copies_into_texture(llvmpipe):
    ctx, gl = llvmpipe, gl_ext.current()
    w, h = 5, 3
    nbytes = w * h * 4
    # llvmpipe gives a buffer 48 bytes more than asked for, so the memory object must be larger than the buffer
    # (with CUDA it is: rounded up to the allocation granularity).
    fd, data = llvmpipe_memfd(nbytes + 64)
    memory, glo = gl.import_buffer(fd, nbytes + 64, nbytes)
    buffer = ctx.external_buffer(glo, nbytes)
    texture = ctx.texture((w, h), 4, dtype="f1")
    for seed in (1, 2):  # the second frame goes through the same buffer
        pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8)
        data[PAGE:PAGE + nbytes] = pixels.tobytes()
        texture.write(buffer)
        gl.finish_fence(gl.fence_sync())
        assert np.array_equal(np.frombuffer(texture.read(), np.uint8).reshape(h, w, 4), pixels)
    texture.release()
    buffer.release()
    gl.delete_buffer(glo)
    gl.delete_memory_object(memory)
    data.close()
    assert gl.get_error() == 0


def test_failed_import_leaves_nothing(llvmpipe):
    gl = gl_ext.current()
    fd, data = llvmpipe_memfd(PAGE, tagged=False)
    with pytest.raises(RuntimeError, match=r"^glBufferStorageMemEXT failed: GL error 0x0505$"):
        gl.import_buffer(fd, PAGE, 64)
    data.close()
    assert gl.get_error() == 0
