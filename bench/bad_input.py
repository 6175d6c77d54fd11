"""Bad-input figures for docs/RESULTS.md: how the .vbnf reader and the commands built on it take hostile files.

    python bench/bad_input.py [--scale 2] [--seed 1] [--out-dir docs/results]

Runs (all on the CPU, single-threaded torch):
- the fuzz mix of tests/test_fuzz_format.py (byte-level damage and CRC-valid semantic edits) on its two small
  models, `--scale` times the CI count, with seed FUZZ_SEED + --seed (so it explores cases CI does not);
- the generators of tests/vbnf_forge.py per bad-input class (F1 corner claims against full octrees, F2 raised LOD
  counts and deep single-cell chains, F4 scene boxes, F6 dense levels without bits, F7 metadata of the wrong type),
  each loaded, and the F6/F7 files also run through `vbnf info` and `vbnf convert` and opened as the viewer does;
- the loader's peak memory on the largest generated files, measured in a child process under RLIMIT_AS
  (tests/test_bad_files.measure_loads), against the bound LOAD_BYTES_PER_FILE_BYTE x file + LOAD_ALLOWANCE_BYTES.
A case passes when it loads (then renders finite colours, as in the fuzz test) or raises FormatError; anything else
is counted as a traceback with its first message. Writes OUT_DIR/bad_input.json and bad_input.md.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import itertools
import json
import logging
import os
import platform
import random
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]  # tests/vbnf_forge imports its neighbours by name

from engine import limits  # noqa: E402
from engine.cli import main as vbnf_main  # noqa: E402
from tests import vbnf_forge as forge  # noqa: E402


def test_module(name: str):
    spec = importlib.util.spec_from_file_location(f"vbnf_{name}", os.path.join(REPO, "tests", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Tally:
    """Outcomes per class; tracebacks keep the first few messages."""

    def __init__(self) -> None:
        self.outcomes: dict[str, Counter] = {}
        self.tracebacks: list[str] = []
        self.max_memory_ratio = 0.0

    def add(self, cls: str, outcome: str) -> None:
        self.outcomes.setdefault(cls, Counter())[outcome] += 1

    def fail(self, cls: str, what: str, err: BaseException) -> None:
        self.add(cls, "traceback")
        if len(self.tracebacks) < 20:
            self.tracebacks.append(f"{cls} {what}: {type(err).__name__}: {str(err)[:300]}")


def run_fuzz(fuzz, tally: Tally, scale: float, seed: int) -> float:
    rays = fuzz.probe_rays()
    stats: dict = {}
    start = time.perf_counter()
    for model in fuzz.MODELS:
        data = fuzz.build_model_bytes(model)
        for mutation, count in {**fuzz.CASES, **fuzz.SEMANTIC_CASES}.items():
            cls = f"fuzz/{'semantic' if mutation in fuzz.SEMANTIC_CASES else 'bytes'}"
            for i in range(max(1, round(count * scale))):
                rng = random.Random(f"{seed}/{model}/{mutation}/{i}")
                try:
                    tally.add(cls, fuzz.run_case(fuzz.mutated_bytes(data, mutation, rng), rays, stats=stats))
                except BaseException as err:  # noqa: BLE001 - counted, with its message
                    tally.fail(cls, f"{model}/{mutation}/{i} (seed {seed})", err)
    tally.max_memory_ratio = max(tally.max_memory_ratio, stats.get("max_memory_ratio", 0.0))
    return time.perf_counter() - start


def generated_files() -> dict[str, list[tuple[str, bytes]]]:
    """Per class: (name, bytes) of every generated file."""
    boxes = [5e-324, 1e-320, 1e-12, 1e-9, 1e-3, 1.0, 1e6, 1e9, 1e12, 1e30]
    centers = [0.0, 1.0, 1e3, 1e6, 1e9, 1e15, 1e30, -1e30]
    return {
        "F1": ([(f"few_corners_l{l}", forge.f1_full_masks_few_corners(l)) for l in range(2, 9)]
               + [(f"min_corners_l{l}_b{b}", forge.f1_full_masks_min_corners(l, b)) for l in range(2, 7)
                  for b in (1, 4)]),
        "F2": ([(f"n_lods_{n}_{k}", forge.f2_raised_n_lods(n, k)) for n in range(1, 23) for k in ("dense", "vq")]
               + [(f"chain_{d}_base{b}_{k}", forge.f2_chain(d, b, k)) for d in range(10, 22) for b in (0, 1, 9)
                  for k in ("dense", "vq")]),
        "F4": [(f"box_{h:g}_{c:g}", forge.f4_scene_box(h, (c, 0.0, -c))) for h, c in itertools.product(boxes, centers)],
        "F6": [("dense_without_bits", forge.f6_dense_without_bits())],
        "F7": [(f"{name}_{k}", forge.f7_bad_metadata(name, k)) for name in sorted(forge.F7_BAD_METADATA)
               for k in ("dense", "vq")],
        "valid worst cases": [("full_grid_1bit_l7", forge.full_octree_file(7)),
                              ("shell_1bit_l7", forge.small_model_bytes("vq", max_level=7, bits=1, feature_dim=1))],
    }


def run_generated(fuzz, tally: Tally, files: dict[str, list[tuple[str, bytes]]], folder: Path) -> None:
    rays = fuzz.probe_rays()
    stats: dict = {}
    for cls, items in files.items():
        for name, data in items:
            try:
                tally.add(cls, fuzz.run_case(data, rays, time_limit_s=60.0, stats=stats))
            except BaseException as err:  # noqa: BLE001
                tally.fail(cls, name, err)
            if cls in ("F6", "F7"):
                run_commands(tally, cls, name, data, folder)
    tally.max_memory_ratio = max(tally.max_memory_ratio, stats.get("max_memory_ratio", 0.0))


def run_commands(tally: Tally, cls: str, name: str, data: bytes, folder: Path) -> None:
    """`vbnf info`, `vbnf info --json`, `vbnf convert` and the viewer's open on one file: exit 0 or 2 with one line
    on stderr and no traceback."""
    from viewer.field_source import FieldSource, lod_psnr
    path = folder / f"{name}.vbnf"
    path.write_bytes(data)
    for argv in (["info", str(path)], ["info", str(path), "--json"],
                 ["convert", str(path), "--bits", "2", "--out", str(folder / f"{name}_b2.vbnf"), "--force"]):
        err = io.StringIO()
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                code = vbnf_main(argv)
            ok = code == 0 or (code == 2 and len(err.getvalue().strip().splitlines()) == 1)
            tally.add(f"{cls} commands", "ok" if ok and "Traceback" not in err.getvalue() else "bad exit")
        except BaseException as e:  # noqa: BLE001
            tally.fail(f"{cls} commands", f"{name}: vbnf {' '.join(argv[:1])}", e)
    try:
        lod_psnr(FieldSource.open(path).full.field.metadata)
        tally.add(f"{cls} commands", "ok")
    except BaseException as e:  # noqa: BLE001
        tally.fail(f"{cls} commands", f"{name}: viewer open", e)


def measure_memory(bad_files, files: dict[str, list[tuple[str, bytes]]], folder: Path) -> list[dict]:
    """Peak loader memory of the three largest files of each class (the valid worst cases: 1-bit full grids)."""
    picks = [(cls, name, data) for cls, items in files.items()
             for name, data in sorted(items, key=lambda x: -len(x[1]))[:3]]
    paths = []
    for cls, name, data in picks:
        paths.append(folder / f"mem_{cls}_{name}.vbnf")
        paths[-1].write_bytes(data)
    rows = bad_files.measure_loads(paths)
    for (cls, name, _), row in zip(picks, rows):
        growth = row["peak_growth"] or 0  # None where /proc/self/clear_refs is not writable
        row.update(cls=cls, name=name, ratio=growth / row["bytes"], within_bound=growth <= row["bound"])
        row.pop("path")
    return rows


def markdown(summary: dict) -> str:
    lines = [f"Hostile .vbnf files ({summary['date']}, commit {summary['commit']}, CPU, `bench/bad_input.py "
             f"--scale {summary['scale']}`; generators in `tests/vbnf_forge.py`). A case passes when it loads (and "
             "renders finite colours) or raises one FormatError line; commands exit 0, or 2 with one line.", "",
             "| class | cases | loaded / ok | FormatError | tracebacks |", "|---|---|---|---|---|"]
    for cls, counts in summary["outcomes"].items():
        loaded = counts.get("loaded", 0) + counts.get("truncated", 0) + counts.get("ok", 0)
        lines.append(f"| {cls} | {sum(counts.values()):,} | {loaded:,} | {counts.get('format_error', 0):,} | "
                     f"{counts.get('traceback', 0) + counts.get('bad exit', 0)} |")
    worst = max(summary["memory"], key=lambda r: r["ratio"])
    lines += ["", f"Cases in all: {summary['cases']:,}; tracebacks: {summary['tracebacks']}. Loader memory bound: "
              f"{limits.LOAD_BYTES_PER_FILE_BYTE} x the bytes of the LODs loaded + "
              f"{limits.LOAD_ALLOWANCE_BYTES >> 20} MiB (engine/limits.py), checked from the validated counts before "
              f"anything is built. Largest loader-memory estimate / file size of a loaded case: "
              f"{summary['max_memory_estimate_ratio']:.0f}x. Measured peak memory (child process under RLIMIT_AS) of "
              f"the largest generated files: largest ratio {worst['ratio']:.0f}x ({worst['cls']} {worst['name']}, "
              f"{worst['bytes']:,} B file, {worst['peak_growth'] / 2**20:.0f} MiB); all within the bound: "
              f"{all(r['within_bound'] for r in summary['memory'])}.", "",
              "| file | bytes | outcome | peak MiB | peak / file |", "|---|---|---|---|---|"]
    for r in summary["memory"]:
        lines.append(f"| {r['cls']} {r['name']} | {r['bytes']:,} | {r['outcome']} | {r['peak_growth'] / 2**20:.1f} | "
                     f"{r['ratio']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=2.0, help="fuzz cases as a multiple of the CI count")
    parser.add_argument("--seed", type=int, default=1, help="added to the CI fuzz seed")
    parser.add_argument("--out-dir", default=os.path.join(REPO, "docs", "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    logging.getLogger("vbnf.metadata").disabled = True
    fuzz, bad_files = test_module("test_fuzz_format"), test_module("test_bad_files")
    tally = Tally()
    seconds = run_fuzz(fuzz, tally, args.scale, fuzz.FUZZ_SEED + args.seed)
    print(f"fuzz: {dict(tally.outcomes)} in {seconds:.0f} s")
    files = generated_files()
    with tempfile.TemporaryDirectory() as tmp:
        run_generated(fuzz, tally, files, Path(tmp))
        memory = measure_memory(bad_files, files, Path(tmp))
    commit = os.popen(f"git -C {REPO} rev-parse --short HEAD").read().strip()
    outcomes = {cls: dict(c) for cls, c in tally.outcomes.items()}
    summary = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()), "commit": commit, "scale": args.scale,
        "seed": fuzz.FUZZ_SEED + args.seed, "outcomes": outcomes,
        "cases": sum(sum(c.values()) for c in tally.outcomes.values()),
        "tracebacks": sum(c.get("traceback", 0) + c.get("bad exit", 0) for c in tally.outcomes.values()),
        "traceback_messages": tally.tracebacks, "max_memory_estimate_ratio": tally.max_memory_ratio,
        "max_measured_memory_ratio": max(r["ratio"] for r in memory), "memory": memory,
        "bound": {"bytes_per_file_byte": limits.LOAD_BYTES_PER_FILE_BYTE, "allowance": limits.LOAD_ALLOWANCE_BYTES},
        "ci_fuzz_cases": fuzz.FUZZ_CASES, "torch": torch.__version__, "machine": platform.machine(),
    }
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "bad_input.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(args.out_dir, "bad_input.md"), "w") as f:
        f.write(markdown(summary))
    print(markdown(summary))
    return 0 if summary["tracebacks"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
