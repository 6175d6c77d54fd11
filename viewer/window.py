"""The window: GLFW, the moderngl context on it, and ImGui (imgui-bundle's native GLFW + OpenGL3 backends).

`headless=True` uses GLFW's Null platform with an EGL context: a real window object, real GL and real ImGui input
processing, with nothing on a screen (tests, servers). Otherwise the platform's own (X11/Wayland/...).

imgui_bundle is imported before glfw so both use the one libglfw that imgui-bundle ships.
"""
from __future__ import annotations

import ctypes
import warnings
from typing import Callable

import imgui_bundle  # noqa: F401  (must precede `import glfw`)
from imgui_bundle import imgui, implot
import glfw
import moderngl

from engine.errors import VbnfError

GLSL_VERSION = "#version 330"

SOFTWARE_RASTERIZERS = ("llvmpipe", "softpipe", "swrast", "lavapipe")
"""GL_RENDERER names of software rasterisers (`Window.software_gl`: frames finished at swap, shader variants primed
at start)."""


def is_software_renderer(gl_renderer: str) -> bool:
    """True for a GL_RENDERER string of a software rasteriser (Mesa llvmpipe and the like)."""
    name = gl_renderer.lower()
    return any(r in name for r in SOFTWARE_RASTERIZERS)


class Window:
    """One GLFW window with a GL 3.3+ core context, ImGui and ImPlot contexts, and a file-drop callback."""

    def __init__(self, width: int, height: int, title: str = "vbnf", headless: bool = False,
                 on_drop: Callable[[list[str]], None] | None = None):
        with warnings.catch_warnings():  # GLFW errors become the one-line VbnfError below, not warnings
            warnings.simplefilter("ignore", glfw.GLFWError)
            self.handle = self._create(width, height, title, headless)
        glfw.make_context_current(self.handle)
        glfw.swap_interval(0 if headless else 1)
        self.ctx = moderngl.create_context(require=330)
        self.software_gl = is_software_renderer(self.ctx.info.get("GL_RENDERER", ""))
        """A software rasteriser (Mesa llvmpipe and the like) draws this context. Then `swap` waits for each frame's
        rasterisation: without a display that takes each frame (a headless context; swap is then no synchronisation
        point) llvmpipe queues frames without bound, and the next call that needs finished rendering (a texture
        upload) waits for all of them: 150-350 ms on 2 cores beside the CPU render, at the first camera move after a
        settled image (docs/VIEWER.md). Finishing each frame bounds that wait to one frame's rasterisation, which
        the loop's fps cap would sleep out anyway. Hardware drivers pace frames themselves."""
        self._drop_cb = None
        if on_drop is not None:
            # Set before ImGui installs its callbacks, so ImGui chains to it.
            self._drop_cb = lambda _w, paths: on_drop(list(paths))
            glfw.set_drop_callback(self.handle, self._drop_cb)
        self.imgui_ctx = imgui.create_context()
        self.implot_ctx = implot.create_context()
        io = imgui.get_io()
        io.set_ini_filename("")  # no imgui.ini beside the user's files
        self.address = ctypes.cast(self.handle, ctypes.c_void_p).value
        imgui.backends.glfw_init_for_opengl(self.address, True)
        imgui.backends.opengl3_init(GLSL_VERSION)

    @staticmethod
    def _create(width: int, height: int, title: str, headless: bool):
        glfw.init_hint(glfw.PLATFORM, glfw.PLATFORM_NULL if headless else glfw.ANY_PLATFORM)  # hints persist
        if not glfw.init():
            raise VbnfError(f"cannot open a window: GLFW failed to initialise ({_glfw_error()}); "
                            "use --headless (with --screenshot), or `vbnf compare` / `vbnf render`")
        glfw.default_window_hints()
        if headless:
            glfw.window_hint(glfw.CONTEXT_CREATION_API, glfw.EGL_CONTEXT_API)
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
        handle = glfw.create_window(int(width), int(height), title, None, None)
        if not handle:
            message = _glfw_error()
            glfw.terminate()
            raise VbnfError(f"cannot open a {width}x{height} OpenGL 3.3 window ({message}); "
                            "check the GPU driver, or use --headless")
        return handle

    # -- per frame -------------------------------------------------------------------------------------------------

    def poll(self) -> None:
        glfw.poll_events()

    def wait(self, timeout_s: float) -> None:
        """Sleeps until an event arrives (input, or glfw.post_empty_event from another thread) or `timeout_s`."""
        glfw.wait_events_timeout(timeout_s)

    def should_close(self) -> bool:
        return bool(glfw.window_should_close(self.handle))

    def framebuffer_size(self) -> tuple[int, int]:
        w, h = glfw.get_framebuffer_size(self.handle)
        return int(w), int(h)

    def minimised(self) -> bool:
        w, h = self.framebuffer_size()
        return w <= 0 or h <= 0 or bool(glfw.get_window_attrib(self.handle, glfw.ICONIFIED))

    def begin_ui(self) -> None:
        imgui.backends.opengl3_new_frame()
        imgui.backends.glfw_new_frame()
        imgui.new_frame()

    def end_ui(self) -> None:
        """Renders the ImGui draw data into the window's framebuffer."""
        imgui.render()
        self.ctx.screen.use()
        imgui.backends.opengl3_render_draw_data(imgui.get_draw_data())

    def swap(self) -> None:
        glfw.swap_buffers(self.handle)
        if self.software_gl:
            self.ctx.finish()

    def set_title(self, title: str) -> None:
        glfw.set_window_title(self.handle, title)

    # -- teardown --------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Shuts ImGui's backends down, destroys the window (and context) and terminates GLFW."""
        if self.handle is None:
            return
        glfw.make_context_current(self.handle)
        imgui.backends.opengl3_shutdown()
        imgui.backends.glfw_shutdown()
        implot.destroy_context(self.implot_ctx)
        imgui.destroy_context(self.imgui_ctx)
        self.ctx.release()
        glfw.destroy_window(self.handle)
        self.handle = None
        glfw.terminate()


def _glfw_error() -> str:
    try:
        code, description = glfw.get_error()
    except Exception:
        return "no details"
    if not description:
        return "no details"
    return description.decode() if isinstance(description, bytes) else str(description)
