"""Atomic, durable file writes that leave no litter.

`write_atomic(path, data)` / `write_atomic_with(path, write)`: the bytes go to a temp file beside `path`, named
`.NAME.tmp-PID` (so a leftover can be found and traced to its writer), which is fsync'd, renamed over `path`, and then
the folder is fsync'd, so after a crash `path` holds the old or the new content, never a mix.

Cleanup: any failure (an OS error, KeyboardInterrupt, SIGTERM, which is turned into SystemExit while a write runs on
the main thread) removes the temp file before the error goes on. Only SIGKILL or a power cut can leave one; the next
write to the same target removes the temp files whose writer process is gone (checked with os.kill(pid, 0)).
"""
from __future__ import annotations

import os
import re
import signal
import threading
from typing import BinaryIO, Callable

from engine.errors import VbnfError

_TMP_RE = re.compile(r"\.tmp-(\d+)(?:\.\d+)?$")


def temp_name(path: str, pid: int | None = None, n: int = 0) -> str:
    """The temp file of `path` for process `pid` (this one by default): FOLDER/.NAME.tmp-PID[.n]."""
    folder, name = os.path.split(os.path.abspath(path))
    pid = os.getpid() if pid is None else pid
    return os.path.join(folder, f".{name}.tmp-{pid}" + (f".{n}" if n else ""))


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists (or exists but belongs to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True  # unknown: keep the file
    return True


def remove_stale_temps(path: str) -> list[str]:
    """Removes the temp files of `path` left by writers that no longer run; returns the removed paths."""
    folder, name = os.path.split(os.path.abspath(path))
    prefix = f".{name}.tmp-"
    removed = []
    try:
        entries = os.listdir(folder)
    except OSError:
        return removed
    for entry in entries:
        if not entry.startswith(prefix):
            continue
        match = _TMP_RE.search(entry[len(name) + 1:])
        if match is None or pid_alive(int(match.group(1))):
            continue
        try:
            os.unlink(os.path.join(folder, entry))
            removed.append(os.path.join(folder, entry))
        except OSError:
            pass
    return removed


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` atomically and durably (see the module docstring); OS errors become one-line
    VbnfErrors naming the path."""
    view = memoryview(data)

    def write(f: BinaryIO) -> None:
        f.write(view)
    write_atomic_with(path, write)


def write_atomic_with(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Like write_atomic, with `write(file)` producing the content (e.g. torch.save(obj, file))."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    remove_stale_temps(path)
    tmp = None
    previous = _sigterm_raises()
    try:
        tmp, f = _open_temp(path)
        try:
            with f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            tmp = None
        finally:
            if tmp is not None:
                _unlink_quietly(tmp)
    except OSError as err:
        raise VbnfError(f"cannot write {path}: {err.strerror or err}; check the folder exists and is writable") \
            from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    _fsync_folder(folder)


def _open_temp(path: str) -> tuple[str, BinaryIO]:
    """A new temp file of `path` for this process (.tmp-PID, or .tmp-PID.n when another thread of this process
    writes the same target)."""
    for n in range(1000):
        tmp = temp_name(path, n=n)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        return tmp, os.fdopen(fd, "wb")
    raise FileExistsError(f"too many temp files beside {path}")


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_folder(folder: str) -> None:
    """Makes the rename durable; not every platform can open a folder."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _sigterm_raises():
    """While a write runs on the main thread, SIGTERM raises SystemExit(143) (so the temp file is removed) unless a
    handler is installed already (engine/cli.py installs the same). Returns the handler to restore, or None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        current = signal.getsignal(signal.SIGTERM)
        if current not in (signal.SIG_DFL, None):
            return None  # someone chose a handler; keep it
        return signal.signal(signal.SIGTERM, _raise_exit)
    except (ValueError, OSError, AttributeError):
        return None


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)
