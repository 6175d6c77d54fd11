"""Which levels' quantisation costs vq its PSNR? CPU runs on lego at 64^3 with more codebook rows at some LODs.

    python bench/vq_bits_per_level_cpu.py DATA [--steps 1200] [--jobs 2] [--json docs/results/vq_bits_per_level_cpu.json]

Variants, same seed and steps (2,048 rays per step, one torch thread each), evaluated at every LOD on 5 test views:
dense; vq b=6; vq b=6 with 10 bits (1,024 rows) at LODs 0-2, where a level has at most ~800 corners, so that
those levels are in effect unquantised; vq b=6 with 10 bits at LODs 3-4 (the finest). The per-level codebook size
is an experiment here (a FeatureGrid subclass in the worker), not a feature of the engine.
Writes the table as JSON and markdown (next to the JSON).
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cpu_study import run_study  # noqa: E402
from provenance import git_commit  # noqa: E402

VARIANTS = [  # name, grid, {LOD: bits} overrides
    ("dense", "dense", {}),
    ("vq6", "vq", {}),
    ("vq6, 10 bits at LODs 0-2", "vq", {0: 10, 1: 10, 2: 10}),
    ("vq6, 10 bits at LODs 3-4", "vq", {3: 10, 4: 10}),
]


def run_variant(args: tuple) -> dict:
    name, kind, override, data, steps = args
    import torch
    from torch import nn

    import engine.field
    import engine.grids
    from engine.data import load_dataset
    from engine.evaluate import evaluate
    from engine.train import DEFAULT_GRID_LR, TrainSettings, Trainer, new_field
    torch.set_num_threads(1)

    class PerLevelGrid(engine.grids.FeatureGrid):
        """FeatureGrid whose vq levels in `override` have 2^bits codebook rows of their own."""

        def __init__(self, kind, n_corners, feature_dim, bits=None, **kw):
            super().__init__(kind, n_corners, feature_dim, bits, **kw)
            if kind == "vq":
                gen = torch.Generator().manual_seed(1)
                for k, b in override.items():
                    self.codebooks[k] = nn.Parameter(torch.randn(1 << b, feature_dim, generator=gen) * 0.1)
                    self.logits[k] = nn.Parameter(torch.randn(n_corners[k], 1 << b, generator=gen) * 0.01)

        def export_level(self, k):
            rows = super().export_level(k)
            rows.bits = override.get(k, rows.bits)
            return rows

    engine.field.FeatureGrid = PerLevelGrid  # NeuralField builds its grid through this name
    torch.manual_seed(0)
    train = load_dataset(data, "train")
    test = load_dataset(data, "test", max_images=5)
    settings = TrainSettings(steps=steps, batch_rays=2048, grid_lr=DEFAULT_GRID_LR[kind])
    trainer = Trainer(new_field(train, kind, 6 if kind == "vq" else None, 6, 2), train, settings)
    t0 = time.perf_counter()
    trainer.step(steps)
    field = trainer.freeze()
    rows = evaluate(field, test, None, "cpu")
    return {"variant": name, "grid": kind, "bits_override": {str(k): v for k, v in override.items()},
            "psnr_per_lod": [round(r["psnr"], 2) for r in rows], "n_corners": [lv.n_corners for lv in field.levels],
            "steps": steps, "train_s": round(time.perf_counter() - t0), "eval_images": rows[-1]["images"],
            "device": "cpu", "date": datetime.date.today().isoformat(), "commit": git_commit()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", default="docs/results/vq_bits_per_level_cpu.json")
    args = ap.parse_args()
    run_study(run_variant, [(name, kind, override, args.data, args.steps) for name, kind, override in VARIANTS],
              args.jobs, args.json, markdown)
    return 0


def markdown(records: list[dict]) -> str:
    n = max(len(r["psnr_per_lod"]) for r in records)
    lines = ["| variant | " + " | ".join(f"LOD {k}" for k in range(n)) + " |", "|---|" + "---|" * n]
    for r in records:
        lines.append(f"| {r['variant']} | " + " | ".join(f"{p:.2f}" for p in r["psnr_per_lod"]) + " |")
    r0 = records[0]
    lines.append(f"\nPSNR (dB) per LOD on {r0['eval_images']} lego test views after {r0['steps']} steps of 2,048 rays "
                 f"at 64^3 on the CPU; corners per LOD {records[1]['n_corners']}. {r0['date']}. "
                 "Written by bench/vq_bits_per_level_cpu.py.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
