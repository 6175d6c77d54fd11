"""F8 (issue 13): writes leave no litter. A writer killed outright (SIGKILL) leaves a findable `.NAME.tmp-PID` that
the next write to the same target removes; SIGTERM, SIGINT or an error mid-write leave nothing; the target is
always the old or the new content."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.atomic import pid_alive, remove_stale_temps, temp_name, write_atomic, write_atomic_with
from engine.errors import VbnfError

REPO = Path(__file__).resolve().parents[1]

# A child that starts writing `target` through write_atomic_with, writes 1 MB, says so on stdout and then waits
# (mid-write) until it is killed.
CHILD = """
import sys, time
from engine.atomic import write_atomic_with
def write(f):
    f.write(b"x" * (1 << 20)); f.flush()
    print("writing", flush=True)
    time.sleep(60)
write_atomic_with(sys.argv[1], write)
"""
CHILD_CLI = """
import sys, time
from engine.cli import main
import engine.atomic
orig = engine.atomic.write_atomic_with
def slow(path, write):
    def w(f):
        f.write(b"y" * 1000); f.flush(); print("writing", flush=True); time.sleep(60)
    return orig(path, w)
engine.atomic.write_atomic_with = slow
import engine.fileformat
sys.exit(main(["convert", *sys.argv[1:]]))
"""


def start_writer(target: Path, code: str = CHILD, args=()) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'tests'}")
    proc = subprocess.Popen([sys.executable, "-c", code, str(target), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=str(REPO), text=True)
    line = proc.stdout.readline()
    assert line.strip() == "writing", proc.stderr.read()
    return proc


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def test_sigkill_leaves_a_findable_temp_that_the_next_write_removes(tmp_path):
    target = tmp_path / "model.vbnf"
    target.write_bytes(b"old")
    proc = start_writer(target)
    proc.kill()
    proc.wait()
    assert temps(tmp_path) == [f".model.vbnf.tmp-{proc.pid}"]
    assert target.read_bytes() == b"old"
    assert not pid_alive(proc.pid)
    write_atomic(target, b"new")
    assert temps(tmp_path) == [] and target.read_bytes() == b"new"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_leave_nothing(tmp_path, sig):
    target = tmp_path / "model.vbnf"
    target.write_bytes(b"old")
    proc = start_writer(target)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    assert temps(tmp_path) == [] and target.read_bytes() == b"old"


def test_sigterm_during_a_command_leaves_nothing_and_exits_143(tmp_path):
    """Through the command line: `vbnf convert` stalled inside its atomic write, then SIGTERM (engine.cli's
    handler turns it into an exit that runs the cleanup)."""
    from bad_inputs import shell_field
    from engine.fileformat import save_model
    model = tmp_path / "m.vbnf"
    save_model(model, shell_field(3, 1, bits=3))
    target = tmp_path / "out.vbnf"
    proc = start_writer(model, CHILD_CLI, ["--bits", "2", "--out", str(target)])
    # argv: [model, --bits, 2, --out, target] -> main(["convert", ...]) below
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode == 143
    assert temps(tmp_path) == [] and not target.exists()


def test_an_error_mid_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "ckpt.pt"
    target.write_bytes(b"old")

    def failing(f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")
    with pytest.raises(VbnfError, match="No space left"):
        write_atomic_with(target, failing)

    def interrupted(f):
        f.write(b"partial")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        write_atomic_with(target, interrupted)
    assert temps(tmp_path) == [] and target.read_bytes() == b"old"


def test_temps_of_live_writers_and_other_files_are_kept(tmp_path):
    target = tmp_path / "m.vbnf"
    mine = Path(temp_name(str(target)))
    mine.write_bytes(b"in progress")  # this process is alive
    other = tmp_path / ".other.vbnf.tmp-1"
    other.write_bytes(b"not ours")
    dead = tmp_path / ".m.vbnf.tmp-999999999"
    dead.write_bytes(b"dead")
    assert remove_stale_temps(str(target)) == [str(dead)]
    assert mine.exists() and other.exists()
    write_atomic(target, b"new")  # a second temp name is used beside this process's own
    assert target.read_bytes() == b"new" and mine.exists()


def test_checkpoints_go_through_the_atomic_writer(tmp_path, monkeypatch):
    from engine import atomic
    calls = []
    original = atomic.write_atomic_with

    def spy(path, write):
        calls.append(Path(path).name)
        return original(path, write)
    monkeypatch.setattr(atomic, "write_atomic_with", spy)
    from engine.train_cli import save_checkpoint

    class FakeTrainer:
        def checkpoint(self):
            return {"step": 1, "t": torch.zeros(3)}
    save_checkpoint(FakeTrainer(), tmp_path / "checkpoint.pt", {"images": 1})
    assert calls == ["checkpoint.pt"]
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["dataset"] == {"images": 1}
    assert temps(tmp_path) == []
