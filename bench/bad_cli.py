"""Bad-input figures of issue 13 for docs/RESULTS.md: runs tests/test_bad_cli.py (the command-line matrix),
tests/test_render_bounds.py and tests/test_atomic_writes.py, and records how many command lines and cases ran, how
many exited 2 with one line, and how many printed a traceback (the goal: 0).

    python bench/bad_cli.py [--out docs/results/bad_cli.json]

Runs on the CPU in about two minutes; needs no GPU.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def matrix_classes() -> dict[str, int]:
    """Command lines of the matrix by issue class (from their test ids)."""
    sys.path[:0] = [REPO, os.path.join(REPO, "tests")]
    import test_bad_cli
    classes = Counter()
    for case_id, _ in test_bad_cli.CASES:
        if case_id.startswith("resume"):
            classes["F10 --resume"] += 1
        elif "data:" in case_id or "missing data" in case_id:
            classes["F9 data loaders"] += 1
        elif any(k in case_id for k in ("model:f2", "model:chain", "cannot render")):
            classes["F2/F3 models the renderer refuses"] += 1
        elif "model:" in case_id:
            classes["F9 broken model files"] += 1
        else:
            classes["F9 options"] += 1
    return dict(sorted(classes.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(REPO, "docs", "results", "bad_cli.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tally_path = os.path.join(tmp, "tally.json")
        env = dict(os.environ, VBNF_BAD_CLI_RESULTS=tally_path, PYTHONPATH=REPO)
        env.pop("VBNF_DEBUG", None)
        files = ["tests/test_bad_cli.py", "tests/test_render_bounds.py", "tests/test_atomic_writes.py"]
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files], cwd=REPO,
                             env=env, capture_output=True, text=True)
        summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-300:]
        tally = json.load(open(tally_path)) if os.path.exists(tally_path) else {}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    record = {"date": datetime.date.today().isoformat(), "commit": commit, "pytest": summary,
              "passed": run.returncode == 0, **tally, "matrix_by_class": matrix_classes()}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    print(json.dumps(record, indent=2))
    return 0 if run.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
