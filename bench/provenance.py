"""Where a benchmark number comes from: the commit of the code that measured it (the card and date each script
records itself). bench/results_page.py prints card, date and commit above every table."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


COMMIT_ENV = "VBNF_COMMIT"
"""Set to the commit by hand where the code runs without git (a copy of the tree on a GPU machine)."""


def git_commit() -> str:
    """The checkout's commit, short hash, with "+changes" when tracked files differ from it; the VBNF_COMMIT
    environment variable when set (a copy of the tree without git); "unknown" outside git otherwise."""
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")
