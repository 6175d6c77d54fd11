"""Bitwidth conversion time (CPU): what the viewer's bitwidth switch and `vbnf convert` spend re-quantising a model.

    python bench/convert_speed.py [--json docs/results/convert_speed.json] [--md docs/results/convert_speed.md]

A lego-sized stand-in (6 LODs, 300k corners at the finest, 37.5k, ..., F = 16, random codebooks of 2^8 rows and
random indices) converted from 8 bits to 6, 4 and 2 (`engine.convert.convert_bits`; load and save not included):
median of 5 after a warm-up, one process, torch's default threads. Writes the JSON records and a markdown table that
docs/RESULTS.md includes.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from provenance import git_commit  # noqa: E402

from engine.convert import convert_bits  # noqa: E402
from engine.decoder import init_decoder  # noqa: E402
from engine.field import InferenceField  # noqa: E402
from engine.grids import LevelRows  # noqa: E402
from engine.octree import dense_octree  # noqa: E402


def lego_sized_field(bits: int = 8) -> InferenceField:
    """Codebook levels the size of a 256^3 lego model's (the octree and corners are stand-ins: the converter reads
    only the codebooks and indices)."""
    gen = torch.Generator().manual_seed(0)
    counts = [300_000 // 8 ** k for k in range(6)][::-1]
    levels = [LevelRows(torch.randn(1 << bits, 16, generator=gen),
                        torch.randint(1 << bits, (n,), generator=gen).int(), None, bits) for n in counts]
    return InferenceField(torch.zeros(3), 1.5, dense_octree(1), 1, levels, [torch.zeros(1, 8, dtype=torch.int32)] * 6,
                          init_decoder(16), "vq", 6)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=str(REPO / "docs/results/convert_speed.json"))
    ap.add_argument("--md", default=str(REPO / "docs/results/convert_speed.md"))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    field = lego_sized_field()
    convert_bits(field, 4)  # warm-up
    records = []
    for bits in (6, 4, 2):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            convert_bits(field, bits)
            times.append(time.perf_counter() - start)
        records.append({"from_bits": 8, "to_bits": bits, "lods": 6, "finest_corners": 300_000,
                        "median_ms": round(1e3 * statistics.median(times), 1), "repeats": args.repeats,
                        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads",
                        "date": datetime.date.today().isoformat(), "commit": git_commit()})
    Path(args.json).write_text(json.dumps(records, indent=1))
    lines = ["| bits | median ms (6 LODs, 300k finest corners, F = 16) |", "|---|---|"]
    lines += [f"| {r['from_bits']} -> {r['to_bits']} | {r['median_ms']} |" for r in records]
    Path(args.md).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
