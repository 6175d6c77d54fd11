"""The NVRTC wrapper (engine/cuda/toolchain.py) on the CPU, with a stand-in for NVRTC that writes its outputs the way
the C library does: into the memory of the buffer it is handed."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.cuda.toolchain import FeatureWidthOptions, compile_source

nvrtc = pytest.importorskip("cuda.bindings.nvrtc")


class FakeNvrtc:
    """Compiles nothing; its 'log' is empty (one NUL, what NVRTC reports for a clean compile) and its 'PTX' fixed.
    Like the C library it writes into the buffer it gets; an immutable `bytes` object is refused, since writing
    into one corrupts it (and `b" " * 1` is the interpreter's shared b" ")."""

    ptx = b"// ptx\x00"

    def __init__(self, log: bytes = b"\x00"):
        self.log = log

    @staticmethod
    def _write(buffer, data: bytes):
        view = memoryview(buffer)
        if view.readonly:
            raise AssertionError(f"NVRTC would write into an immutable {type(buffer).__name__}")
        view[: len(data)] = data
        return (nvrtc.nvrtcResult.NVRTC_SUCCESS,)

    def install(self, monkeypatch):
        ok = nvrtc.nvrtcResult.NVRTC_SUCCESS
        monkeypatch.setattr(nvrtc, "nvrtcCreateProgram", lambda *a: (ok, "prog"))
        monkeypatch.setattr(nvrtc, "nvrtcCompileProgram", lambda *a: (ok,))
        monkeypatch.setattr(nvrtc, "nvrtcGetProgramLogSize", lambda prog: (ok, len(self.log)))
        monkeypatch.setattr(nvrtc, "nvrtcGetProgramLog", lambda prog, buf: self._write(buf, self.log))
        monkeypatch.setattr(nvrtc, "nvrtcGetPTXSize", lambda prog: (ok, len(self.ptx)))
        monkeypatch.setattr(nvrtc, "nvrtcGetPTX", lambda prog, buf: self._write(buf, self.ptx))
        monkeypatch.setattr(nvrtc, "nvrtcDestroyProgram", lambda prog: (ok,))


SOURCE = Path(__file__).resolve().parents[1] / "engine" / "cuda" / "grid_features.cu"


@pytest.mark.parametrize("log", [b"\x00", b"warning: unused variable\x00"])
def test_a_compile_hands_nvrtc_writable_buffers_and_leaves_the_interpreter_intact(monkeypatch, log):
    """A clean compile's one-byte log went into `b" " * 1`, the interpreter's shared b" ": NVRTC's NUL made every
    later one-byte read of a space in the process a NUL (torch.load then read a checkpoint's shape 32 as 0)."""
    FakeNvrtc(log).install(monkeypatch)
    image, compile_log = compile_source(SOURCE, FeatureWidthOptions(), "compute_90", cubin=False)
    assert image == FakeNvrtc.ptx
    assert compile_log == log.rstrip(b"\x00").decode()
    assert b" " == bytes([32]) and bytes([32])[0] == 32
