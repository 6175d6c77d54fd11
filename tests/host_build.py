"""Host builds of the CUDA sources in engine/cuda: each .cu file also compiles as plain C++ (no __CUDACC__), so the
tests check its arithmetic and its parameter-struct layout on the CPU, without a GPU."""
from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.cuda.toolchain import read_source


def cxx() -> str | None:
    """The system C++ compiler, or None."""
    return shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


needs_cxx = pytest.mark.skipif(cxx() is None, reason="no C++ compiler for the host build of the CUDA sources")


def host_library(source_path: Path, defines: list[str], tmp_dir: Path) -> ctypes.CDLL:
    """`source_path` compiled as a C++ shared library with `defines` (cached in tmp_dir per source, the headers it
    includes and defines; the compiler finds the headers, e.g. common.cuh, next to the source)."""
    source, headers = read_source(source_path)
    text = source + "".join(name + body for name, body in headers.items())
    digest = hashlib.sha256((text + " ".join(defines)).encode()).hexdigest()[:16]
    lib = tmp_dir / f"{source_path.stem}_host_{digest}.so"
    if not lib.exists():
        subprocess.run([cxx(), "-O1", "-shared", "-fPIC", "-std=c++17", "-x", "c++", *defines, "-o", str(lib),
                        str(source_path)], check=True, capture_output=True)
    return ctypes.CDLL(str(lib))


def assert_layout_matches(layout_fn, struct: type[ctypes.Structure]) -> None:
    """The C struct's field offsets and size (written by `layout_fn(offsets)`, which returns their count) equal the
    ctypes twin's, field by field in struct.LAYOUT_FIELDS order."""
    offsets = (ctypes.c_longlong * 64)()
    n = layout_fn(offsets)
    names = struct.LAYOUT_FIELDS
    assert n == len(names) + 1
    for i, name in enumerate(names):
        assert offsets[i] == getattr(struct, name).offset, name
    assert offsets[len(names)] == ctypes.sizeof(struct)
