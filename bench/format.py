"""File-format numbers for docs/RESULTS.md: per model file, its size, bitrate ladder, theoretical size, the first
renderable prefix, CPU load time and a fuzz run on the file itself.

    python bench/format.py MODEL.vbnf [MODEL.vbnf ...] [--out-dir docs/results] [--fuzz-cases 500] [--loads 7]
    python bench/format.py --demo /tmp/vbnf_demo --out-dir /tmp/vbnf_demo   # builds two small models first

Writes OUT_DIR/format.json ({"models": [one record per file], ...}) and OUT_DIR/format.md (a table that
docs/RESULTS.md includes). Load times are CPU, one process, --threads torch threads (default 1), median of --loads
complete loads.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import warnings

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from provenance import git_commit  # noqa: E402

from engine.fileformat import (  # noqa: E402
    CHUNK_OVERHEAD, HEADER_BYTES, TruncatedModelWarning, load_model, model_layout, save_model, theoretical_bytes,
)


def fuzz_module():
    """tests/test_fuzz_format.py as a module (its CASES, FUZZ_CASES and run_fuzz)."""
    spec = importlib.util.spec_from_file_location("vbnf_fuzz", os.path.join(REPO, "tests", "test_fuzz_format.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scaled_cases(cases: dict[str, int], total: int) -> dict[str, int]:
    """The CI mix of mutations scaled to about `total` cases (at least one of each when total > 0)."""
    if total <= 0:
        return {}
    whole = sum(cases.values())
    return {k: max(1, round(v * total / whole)) for k, v in cases.items()}


def median_load_seconds(path: str, loads: int) -> float:
    load_model(path)  # warm-up (imports, allocator)
    times = []
    for _ in range(loads):
        start = time.perf_counter()
        load_model(path)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def model_record(path: str, fuzz, fuzz_cases: int, loads: int) -> dict:
    layout = model_layout(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncatedModelWarning)  # a benchmark of a partial file would mislead
        field = load_model(path)
    meta = layout.chunks[0]
    overhead = HEADER_BYTES + (meta.end - meta.offset) + CHUNK_OVERHEAD * (len(layout.chunks) - 1)
    with open(path, "rb") as f:
        data = f.read()
    report = fuzz.run_fuzz(data, scaled_cases(fuzz.CASES, fuzz_cases), name=os.path.basename(path)) \
        if fuzz_cases > 0 else {"cases": 0, "outcomes": {}, "slowest_case_s": 0.0, "total_s": 0.0}
    distinct = set(layout.bits)
    return {
        "model": path,
        "grid": layout.grid_kind,
        "bits": layout.bits[0] if len(distinct) == 1 else layout.bits,
        "bits_per_lod": layout.bits,
        "feature_dim": layout.feature_dim,
        "n_lods": layout.n_lods,
        "base_level": layout.base_level,
        "corners_per_lod": [lv["corners"] for lv in layout.structure["grid"]["levels"]],
        "file_bytes": os.path.getsize(path),
        "lod_prefix_bytes": layout.lod_prefix_bytes,
        "theoretical_bytes": theoretical_bytes(field),
        "container_bytes": overhead,
        "metadata_chunk_bytes": meta.end - meta.offset,
        "first_renderable_bytes": layout.lod_prefix_bytes[0],
        "load_s_median": median_load_seconds(path, loads),
        "load_runs": loads,
        "fuzz_cases": report["cases"],
        "fuzz_outcomes": report["outcomes"],
        "fuzz_slowest_case_s": report["slowest_case_s"],
        "fuzz_total_s": report["total_s"],
        "metrics": layout.metadata.get("metrics"),
    }


def markdown(records: list[dict], ci_cases: int, finest: dict) -> str:
    lines = [
        "| model | grid | bits | F | LODs | file bytes | theoretical bytes | container bytes | first renderable bytes "
        "| bitrate ladder (kB to render LOD 0, 1, ...) | CPU load ms (median) | fuzz cases: loaded / truncated / "
        "FormatError |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        o = r["fuzz_outcomes"]
        ladder = ", ".join(f"{b / 1e3:.1f}" for b in r["lod_prefix_bytes"])
        bits = "fp16" if r["bits"] is None else r["bits"]
        lines.append(
            f"| {os.path.basename(r['model'])} | {r['grid']} | {bits} | {r['feature_dim']} | {r['n_lods']} "
            f"| {r['file_bytes']:,} | {r['theoretical_bytes']:,} | {r['container_bytes']:,} "
            f"| {r['first_renderable_bytes']:,} | {ladder} | {r['load_s_median'] * 1e3:.1f} "
            f"| {r['fuzz_cases']}: {o.get('loaded', 0)} / {o.get('truncated', 0)} / {o.get('format_error', 0)} |")
    lines += [
        "",
        f"CPU load time of the finest model ({os.path.basename(finest['model'])}, {finest['file_bytes']:,} bytes): "
        f"{finest['load_s_median'] * 1e3:.1f} ms (median of {finest['load_runs']} loads, "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"torch threads: {torch.get_num_threads()}).",
        "Theoretical bytes: b-bit indices + fp16 codebooks (or fp16 dense features) + fp16 decoder + one child-mask "
        "byte per occupied non-finest node; container bytes: header, metadata JSON, 20 bytes per chunk "
        "(docs/FORMAT.md).",
        f"Fuzz cases here were run on each file by this script; CI runs {ci_cases:,} cases on two small models "
        f"(tests/test_fuzz_format.py). Every case either loaded or raised FormatError.",
    ]
    return "\n".join(lines) + "\n"


def build_demo_models(folder: str) -> list[str]:
    """Two small models (dense and 4-bit vq, sphere-shell octree, 5 LODs) for trying the script."""
    from engine.field import NeuralField
    from engine.octree import morton_encode, octree_from_finest_cells

    os.makedirs(folder, exist_ok=True)
    r = 1 << 6
    ax = torch.arange(r)
    xyz = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    dist = ((xyz.float() + 0.5) / r - 0.5).norm(dim=1)
    octree = octree_from_finest_cells(morton_encode(xyz[(dist - 0.35).abs() < 1.0 / r]), 6)
    paths = []
    for kind, bits in (("dense", None), ("vq", 4)):
        field = NeuralField(octree, 2, kind, feature_dim=16, bits=bits).freeze()
        path = os.path.join(folder, f"demo_{kind}.vbnf")
        save_model(path, field, {"provenance": {"dataset": "demo sphere shell", "steps": 0}})
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help=".vbnf model files")
    parser.add_argument("--out-dir", default=os.path.join(REPO, "docs", "results"))
    parser.add_argument("--fuzz-cases", type=int, default=500, help="fuzz cases per model file (0: none)")
    parser.add_argument("--loads", type=int, default=7, help="loads per model for the median load time")
    parser.add_argument("--demo", metavar="DIR", help="first build two small demo models in DIR and add them")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on a shared 2-core machine a thread pool's wake-up stalls, "
                             "not the loader, dominate small loads; the count is recorded)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = list(args.models) + (build_demo_models(args.demo) if args.demo else [])
    if not models:
        parser.error("give model files or --demo DIR")
    fuzz = fuzz_module()
    records = []
    for path in models:
        record = model_record(path, fuzz, args.fuzz_cases, args.loads)
        records.append(record)
        print(f"{path}: {record['grid']} {record['bits']} bits, {record['file_bytes']:,} B (theoretical "
              f"{record['theoretical_bytes']:,}), ladder {record['lod_prefix_bytes']}, load "
              f"{record['load_s_median'] * 1e3:.1f} ms, fuzz {record['fuzz_cases']} cases {record['fuzz_outcomes']}")
    finest = max(records, key=lambda r: (r["n_lods"], r["file_bytes"]))
    os.makedirs(args.out_dir, exist_ok=True)
    summary = {"models": records, "ci_fuzz_cases": fuzz.FUZZ_CASES, "ci_fuzz_seed": fuzz.FUZZ_SEED,
               "finest_model": finest["model"], "finest_load_s_median": finest["load_s_median"],
               "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
               "date": time.strftime("%Y-%m-%d"), "commit": git_commit()}
    with open(os.path.join(args.out_dir, "format.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(args.out_dir, "format.md"), "w") as f:
        f.write(markdown(records, fuzz.FUZZ_CASES, finest))
    print(f"wrote {os.path.join(args.out_dir, 'format.json')} and format.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
