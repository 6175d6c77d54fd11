"""Equal-steps probes, run side by side on one GPU: each variant is a bench/train_quality.py process of its own.

    python bench/probe_parallel.py DATA --steps 3000 --json-dir DIR [--eval-lods 3,5,6] \
        dense vq6 "lb15=vq6 --lod-bias 1.5" "c10=vq10.10.10.10.6.6.6"

A variant is CONFIG or NAME=CONFIG EXTRA-ARGS (NAME tags its records and files). The processes share the GPU, so
their speed says nothing; they run the same number of steps, so their PSNRs compare variants without the run-to-run
speed differences of the device machines (up to 20%) that equal-time probes suffer. Writes DIR/probe_NAME.json and
DIR/probe_NAME.log per variant and prints one table of all (train_quality's markdown).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from train_quality import markdown  # noqa: E402


def parse_variant(text: str) -> tuple[str, str, list[str]]:
    """'vq6' -> ('vq6', 'vq6', []); 'lb15=vq6 --lod-bias 1.5' -> ('lb15', 'vq6', ['--lod-bias', '1.5'])."""
    name, _, rest = text.partition("=") if "=" in text.split()[0] else ("", "", text)
    words = shlex.split(rest)
    return name or words[0], words[0], words[1:]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16384)
    ap.add_argument("--max-level", type=int, default=8)
    ap.add_argument("--eval-lods", default="3,5,6")
    ap.add_argument("--eval-images", type=int, default=25)
    ap.add_argument("--json-dir", default="runs/probes")
    ap.add_argument("--out-dir", default="runs/probe_models")
    ap.add_argument("--timeout", type=float, default=540, help="seconds before every unfinished run is stopped")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads per process")
    args = ap.parse_args()
    out = Path(args.json_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    procs = []
    for text in args.variants:
        name, config, extra = parse_variant(text)
        tag = "" if name == config else f"_{name}"
        cmd = [sys.executable, str(ROOT / "bench" / "train_quality.py"), args.data, "--configs", config,
               "--steps", str(args.steps), "--batch", str(args.batch), "--max-level", str(args.max_level),
               "--eval-lods", args.eval_lods, "--eval-images", str(args.eval_images), "--out-dir", args.out_dir,
               "--json", str(out / f"probe_{name}.json"), "--tag", tag, *extra]
        log = open(out / f"probe_{name}.log", "w")
        procs.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
    t0 = time.perf_counter()
    while any(p.poll() is None for _, p, _ in procs) and time.perf_counter() - t0 < args.timeout:
        time.sleep(5)
    for name, p, log in procs:
        if p.poll() is None:
            p.kill()
            print(f"{name}: stopped after {args.timeout:.0f} s")
        log.close()
    records = []
    for name, p, _ in procs:
        path = out / f"probe_{name}.json"
        if path.exists():
            records += json.loads(path.read_text())
        else:
            tail = (out / f"probe_{name}.log").read_text().splitlines()[-3:]
            print(f"{name}: no result (exit {p.returncode}): {' | '.join(tail)}")
    print(f"{len(procs)} runs of {args.steps} steps side by side, {time.perf_counter() - t0:.0f} s")
    if records:
        print(markdown(records))
        (out / "probes.md").write_text(markdown(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
