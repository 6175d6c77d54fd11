"""GL functions moderngl does not wrap, called through ctypes in the GL context current on this thread.

Layer: engine. Used by engine.render_target's interop "external": GL_EXT_memory_object + GL_EXT_memory_object_fd
(import a CUDA allocation as a GL buffer) and sync objects (GL 3.2). `current()` gives the wrappers for the context
current now. Addresses come from glfw.get_proc_address when a GLFW context is current (the desktop viewer, GLX or
EGL), else from eglGetProcAddress in libEGL (moderngl's headless EGL contexts). On Linux both give addresses that
hold for every context of their window-system API, so each loader's functions are resolved once and cached.
A NULL address is a one-line RuntimeError; drivers may also hand out a stub for a name they don't implement, so
callers check the extension strings first (moderngl: ctx.extensions).
"""
from __future__ import annotations

import ctypes
import os
import sys
import warnings
from ctypes import POINTER, c_int, c_ssize_t, c_uint, c_uint64, c_void_p

GL_COPY_WRITE_BUFFER = 0x8F37
GL_HANDLE_TYPE_OPAQUE_FD_EXT = 0x9586
GL_SYNC_GPU_COMMANDS_COMPLETE = 0x9117
GL_SYNC_FLUSH_COMMANDS_BIT = 0x1
GL_ALREADY_SIGNALED = 0x911A
GL_TIMEOUT_EXPIRED = 0x911B
GL_CONDITION_SATISFIED = 0x911C
GL_WAIT_FAILED = 0x911D

# name: (restype, argtypes). GLuint/GLenum/GLbitfield: c_uint, GLsizei/GLint: c_int, GLsizeiptr: c_ssize_t,
# GLuint64: c_uint64, GLsync: c_void_p.
_PROTOTYPES = {
    "glGetError": (c_uint, ()),
    "glCreateMemoryObjectsEXT": (None, (c_int, POINTER(c_uint))),
    "glDeleteMemoryObjectsEXT": (None, (c_int, POINTER(c_uint))),
    "glImportMemoryFdEXT": (None, (c_uint, c_uint64, c_uint, c_int)),
    "glGenBuffers": (None, (c_int, POINTER(c_uint))),
    "glBindBuffer": (None, (c_uint, c_uint)),
    "glDeleteBuffers": (None, (c_int, POINTER(c_uint))),
    "glBufferStorageMemEXT": (None, (c_uint, c_ssize_t, c_uint, c_uint64)),
    "glFenceSync": (c_void_p, (c_uint, c_uint)),
    "glClientWaitSync": (c_uint, (c_void_p, c_uint, c_uint64)),
    "glDeleteSync": (None, (c_void_p,)),
}


class GLExt:
    """Typed wrappers of the functions in _PROTOTYPES. get_proc_address(name: str) -> address (int) or None/0."""

    def __init__(self, get_proc_address):
        self._get_proc_address = get_proc_address
        self._functions: dict[str, object] = {}

    def fn(self, name: str):
        """The ctypes function `name` (resolved on first use)."""
        f = self._functions.get(name)
        if f is None:
            if name not in _PROTOTYPES:
                raise ValueError(f"engine.gl_ext has no prototype for {name}")
            address = self._get_proc_address(name)
            if not address:
                raise RuntimeError(f"GL function {name} is not available (its address resolved to NULL)")
            restype, argtypes = _PROTOTYPES[name]
            f = self._functions[name] = ctypes.CFUNCTYPE(restype, *argtypes)(address)
        return f

    # -- errors --------------------------------------------------------------------------------------------------

    def get_error(self) -> int:
        return int(self.fn("glGetError")())

    def clear_errors(self) -> None:
        """Drops errors left by earlier calls (so check() blames the right call)."""
        for _ in range(32):
            if not self.get_error():
                return

    def check(self, what: str) -> None:
        """RuntimeError naming `what` if GL reports an error."""
        err = self.get_error()
        if err:
            self.clear_errors()
            raise RuntimeError(f"{what} failed: GL error 0x{err:04X}")

    # -- memory objects and buffers ------------------------------------------------------------------------------

    def _create(self, name: str, what: str) -> int:
        out = c_uint(0)
        self.fn(name)(1, ctypes.byref(out))
        if not out.value:
            raise RuntimeError(f"{what} returned no object (GL error 0x{self.get_error():04X})")
        return out.value

    def create_memory_object(self) -> int:
        return self._create("glCreateMemoryObjectsEXT", "glCreateMemoryObjectsEXT")

    def delete_memory_object(self, memory: int) -> None:
        self.fn("glDeleteMemoryObjectsEXT")(1, ctypes.byref(c_uint(memory)))

    def create_buffer(self) -> int:
        """A new buffer name (no storage yet). glGenBuffers, not GL 4.5's glCreateBuffers: the viewer's and
        moderngl's EGL contexts are GL 3.3 core, and the extension works there."""
        return self._create("glGenBuffers", "glGenBuffers")

    def delete_buffer(self, buffer: int) -> None:
        self.fn("glDeleteBuffers")(1, ctypes.byref(c_uint(buffer)))

    def import_memory_fd(self, memory: int, size: int, fd: int) -> None:
        """Imports `fd` (an opaque fd of `size` bytes) into `memory`. The fd is consumed either way: GL owns it after
        a successful import, and it is closed here when the import fails."""
        try:
            self.clear_errors()
            self.fn("glImportMemoryFdEXT")(memory, size, GL_HANDLE_TYPE_OPAQUE_FD_EXT, fd)
            self.check("glImportMemoryFdEXT")
        except BaseException:
            os.close(fd)
            raise

    def buffer_storage_mem(self, buffer: int, size: int, memory: int, offset: int = 0) -> None:
        """Gives `buffer` (from create_buffer) `size` bytes of `memory` from byte `offset` as its storage."""
        self.clear_errors()
        self.fn("glBindBuffer")(GL_COPY_WRITE_BUFFER, buffer)  # a target no moderngl call relies on between calls
        try:
            self.fn("glBufferStorageMemEXT")(GL_COPY_WRITE_BUFFER, size, memory, offset)
            self.check("glBufferStorageMemEXT")
        finally:
            self.fn("glBindBuffer")(GL_COPY_WRITE_BUFFER, 0)

    def import_buffer(self, fd: int, memory_size: int, buffer_size: int) -> tuple[int, int]:
        """(memory object, buffer name): `fd` (opaque fd, memory_size bytes, consumed as by import_memory_fd) imported
        and a GL buffer of its first buffer_size bytes. Nothing is left behind when it raises."""
        memory = buffer = 0
        try:
            memory = self.create_memory_object()
        except BaseException:
            os.close(fd)
            raise
        try:
            self.import_memory_fd(memory, memory_size, fd)
            buffer = self.create_buffer()
            self.buffer_storage_mem(buffer, buffer_size, memory)
            return memory, buffer
        except BaseException:
            if buffer:
                self.delete_buffer(buffer)
            self.delete_memory_object(memory)
            raise

    # -- sync objects --------------------------------------------------------------------------------------------

    def fence_sync(self) -> int:
        """A fence after the GL commands issued so far (GLsync as an int)."""
        sync = self.fn("glFenceSync")(GL_SYNC_GPU_COMMANDS_COMPLETE, 0)
        if not sync:
            raise RuntimeError(f"glFenceSync returned no fence (GL error 0x{self.get_error():04X})")
        return int(sync)

    def client_wait_sync(self, sync: int, flags: int, timeout_ns: int) -> int:
        """GL_ALREADY_SIGNALED, GL_CONDITION_SATISFIED, GL_TIMEOUT_EXPIRED or GL_WAIT_FAILED."""
        return int(self.fn("glClientWaitSync")(sync, flags, int(timeout_ns)))

    def delete_sync(self, sync: int) -> None:
        self.fn("glDeleteSync")(sync)

    def finish_fence(self, sync: int, timeout_ns: int = 5_000_000_000) -> None:
        """Waits on the CPU (flushing GL) until `sync` is signalled, then deletes it; RuntimeError on timeout."""
        try:
            status = self.client_wait_sync(sync, GL_SYNC_FLUSH_COMMANDS_BIT, timeout_ns)
        finally:
            self.delete_sync(sync)
        if status not in (GL_ALREADY_SIGNALED, GL_CONDITION_SATISFIED):
            what = "timed out" if status == GL_TIMEOUT_EXPIRED else f"failed (status 0x{status:04X})"
            raise RuntimeError(f"glClientWaitSync {what}")


# ---------------------------------------------------------------------------------------------------------------
# Loaders


def _glfw_get_proc_address():
    """glfw.get_proc_address if a GLFW context is current on this thread, else None. Only when glfw is already
    imported: without that no GLFW context exists, and importing it here could load a second libglfw (the viewer
    imports imgui_bundle first so both share one)."""
    glfw = sys.modules.get("glfw")
    if glfw is None:
        return None
    with warnings.catch_warnings():  # GLFW not initialised: a GLFWError warning and a NULL context
        warnings.simplefilter("ignore")
        try:
            current = glfw.get_current_context()
        except glfw.GLFWError:  # glfw.ERROR_REPORTING = "raise"
            return None
    return glfw.get_proc_address if current else None


_EGL_GET_PROC_ADDRESS = None


def _egl_get_proc_address():
    global _EGL_GET_PROC_ADDRESS
    if _EGL_GET_PROC_ADDRESS is None:
        try:
            lib = ctypes.CDLL("libEGL.so.1")
        except OSError as e:
            raise RuntimeError(f"cannot load libEGL.so.1 to resolve GL functions ({e})") from None
        f = lib.eglGetProcAddress
        f.restype, f.argtypes = c_void_p, (ctypes.c_char_p,)
        _EGL_GET_PROC_ADDRESS = lambda name: f(name.encode())
    return _EGL_GET_PROC_ADDRESS


_LOADED: dict[str, GLExt] = {}


def current() -> GLExt:
    """The wrappers for the GL context current on this thread (GLFW's loader when a GLFW context is current)."""
    glfw_get = _glfw_get_proc_address()
    key = "glfw" if glfw_get is not None else "egl"
    gl = _LOADED.get(key)
    if gl is None:
        gl = _LOADED[key] = GLExt(glfw_get if glfw_get is not None else _egl_get_proc_address())
    return gl
