"""Would entropy-coded indices buy quality per byte? A CPU study for issue 12's decision on a format change.

    python bench/ecvq_cpu.py DATA [--steps 1200] [--jobs 2] [--json docs/results/ecvq_cpu.json]

Entropy-constrained VQ: each corner picks argmax_j(logit_j + lam * log p_j), where p is its level's current row
usage (re-measured every BIAS_EVERY steps), so rows that many corners use become cheaper to choose; the indices'
order-0 entropy then falls below b bits, and an entropy coder at save (a format change, not made) would store
them in about that many bits. The prior is added to the logits' columns (and the previous prior taken off), so the
trainer, VQLogitsAdam and the kernels are untouched; an experiment here, not a feature of the engine.

Variants, same seed and steps (2,048 rays per step, one torch thread each), vq at 64^3 on lego: plain b = 3, 4, 6
(fixed-rate, the file as it is) and b = 6 with lam > 0. For each: PSNR at the finest LOD on 5 val views, and the
bytes of every level's indices (plain: b bits per corner; entropy-constrained: the order-0 entropy per corner plus
a 2-byte count per row) and of its codebooks (fp16); the octree and decoder are the same for all and left out.
The comparison is on index bytes: at 64^3 the codebooks are a quarter of the bytes, at 256^3 (the real models)
a few percent, so index bytes are what the result carries over to.
Writes the table as JSON and markdown (next to the JSON).
"""
from __future__ import annotations

import argparse
import datetime
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cpu_study import run_study  # noqa: E402
from provenance import git_commit  # noqa: E402

BIAS_EVERY = 25
"""Steps between re-measurements of the row usage that the prior is made from."""

VARIANTS = [  # name, bits, lam
    ("vq3", 3, 0.0), ("vq4", 4, 0.0), ("vq5", 5, 0.0), ("vq6", 6, 0.0),
    ("vq6 ecvq 0.05", 6, 0.05), ("vq6 ecvq 0.1", 6, 0.1), ("vq6 ecvq 0.2", 6, 0.2),
]


def index_bytes(indices, bits: int, coded: bool) -> tuple[float, float]:
    """(bytes of one level's indices, bits per index): b bits each, or the order-0 entropy plus a 2-byte count
    per row (what an entropy coder's table would cost)."""
    import torch
    rows = 1 << bits
    if not coded:
        return indices.numel() * bits / 8, float(bits)
    p = torch.bincount(indices, minlength=rows).double() / max(1, indices.numel())
    entropy = float(-(p[p > 0] * p[p > 0].log2()).sum())
    return indices.numel() * entropy / 8 + 2 * rows, entropy


def run_variant(args: tuple) -> dict:
    name, bits, lam, data, steps = args
    import torch

    from engine.data import load_dataset
    from engine.evaluate import evaluate
    from engine.train import DEFAULT_GRID_LR, TrainSettings, Trainer, new_field
    torch.set_num_threads(1)
    torch.manual_seed(0)
    train = load_dataset(data, "train")
    val = load_dataset(data, "val", max_images=5)
    settings = TrainSettings(steps=steps, batch_rays=2048, grid_lr=DEFAULT_GRID_LR["vq"])
    trainer = Trainer(new_field(train, "vq", bits, 6, 2), train, settings)
    prior: list[torch.Tensor] = []
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        n = min(BIAS_EVERY, steps - done)
        trainer.step(n)
        done += n
        if lam > 0:
            grid = trainer.field.grid  # pruning replaces the grid; its logits keep the prior they were given
            with torch.no_grad():
                for k, logits in enumerate(grid.logits):
                    counts = torch.bincount(grid.indices(k), minlength=logits.shape[1]).double()
                    new = (lam * torch.log((counts + 0.5) / (counts.sum() + 0.5 * len(counts)))).float()
                    old = prior[k] if k < len(prior) else torch.zeros_like(new)
                    logits.add_(new - old)
                    if k < len(prior):
                        prior[k] = new
                    else:
                        prior.append(new)
                grid.refresh_indices()
    train_s = time.perf_counter() - t0
    field = trainer.freeze()
    finest = field.max_lod
    psnr = evaluate(field, val, [finest], "cpu")[0]["psnr"]
    per_level = [index_bytes(lv.indices.long(), lv.bits, lam > 0) for lv in field.levels]
    return {"variant": name, "bits": bits, "lam": lam, "val_psnr": round(psnr, 2),
            "index_bytes": round(sum(b for b, _ in per_level)),
            "codebook_bytes": sum((1 << lv.bits) * field.feature_dim * 2 for lv in field.levels),
            "bits_per_index": [round(h, 2) for _, h in per_level],
            "n_corners": [lv.n_corners for lv in field.levels], "steps": steps, "train_s": round(train_s),
            "val_images": 5, "device": "cpu", "date": datetime.date.today().isoformat(), "commit": git_commit()}


def interpolated_plain_psnr(records: list[dict], size: float) -> float | None:
    """PSNR of the plain (fixed-rate) curve at `size` bytes, linear in log(bytes); None outside it."""
    plain = sorted((r["index_bytes"], r["val_psnr"]) for r in records if r["lam"] == 0)
    for (b0, p0), (b1, p1) in zip(plain, plain[1:]):
        if b0 <= size <= b1:
            t = (math.log(size) - math.log(b0)) / (math.log(b1) - math.log(b0))
            return p0 + t * (p1 - p0)
    return None


def markdown(records: list[dict]) -> str:
    lines = ["| variant | bits per index, LOD 0..4 | index bytes | codebook bytes | val PSNR | plain curve at those "
             "index bytes |", "|---|---|---|---|---|---|"]
    for r in records:
        ref = interpolated_plain_psnr(records, r["index_bytes"]) if r["lam"] > 0 else None
        lines.append(f"| {r['variant']} | {' / '.join(f'{h:g}' for h in r['bits_per_index'])} | "
                     f"{r['index_bytes']:,} | {r['codebook_bytes']:,} | {r['val_psnr']:.2f} | "
                     + ("-" if ref is None else f"{ref:.2f} ({r['val_psnr'] - ref:+.2f})") + " |")
    r0 = records[0]
    lines.append(f"\nFinest-LOD PSNR on {r0['val_images']} lego val views after {r0['steps']} steps of 2,048 rays at "
                 f"64^3 on the CPU; corners per LOD {r0['n_corners']}. {r0['date']}, {r0['commit']}. Written by "
                 "bench/ecvq_cpu.py.")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", default="docs/results/ecvq_cpu.json")
    args = ap.parse_args()
    run_study(run_variant, [(name, bits, lam, args.data, args.steps) for name, bits, lam in VARIANTS], args.jobs,
              args.json, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
