"""Does an architecture or schedule change close the vq-vs-dense gap? Small CPU runs on our procedural scene.

    python bench/vq_gap_cpu.py [--steps 1500] [--max-level 6] [--resolution 128] [--jobs 2]
        [--json docs/results/vq_gap_cpu.json]

Each variant trains from the same seed for the same number of steps (2,048 rays per step, one torch thread per run)
and is evaluated at its finest LOD on the scene's test views:
- dense / vq b=6 with the default decoder (hidden 64) and features F = 16;
- F = 32 (wider features: for vq only the codebook grows, not the bits per corner);
- a decoder of hidden width 128 (the width of the paper's code; CPU only: the CUDA marcher is built for 64);
- a dense warm start: dense for half the steps, k-means to 2^b rows, then the straight-through vq training;
- more training weight on fine LODs (lod_bias 4 instead of 2: P(LOD k) proportional to 4^k).
Writes the table as JSON and markdown (next to the JSON); --only runs some variants and replaces their rows.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from provenance import git_commit  # noqa: E402

VARIANTS = [  # name, grid, bits, feature_dim, hidden, dense warm-start fraction, lod_bias
    ("dense", "dense", None, 16, 64, 0.0, 2.0),
    ("vq6", "vq", 6, 16, 64, 0.0, 2.0),
    ("dense F32", "dense", None, 32, 64, 0.0, 2.0),
    ("vq6 F32", "vq", 6, 32, 64, 0.0, 2.0),
    ("dense hidden128", "dense", None, 16, 128, 0.0, 2.0),
    ("vq6 hidden128", "vq", 6, 16, 128, 0.0, 2.0),
    ("vq6 dense warm start", "vq", 6, 16, 64, 0.5, 2.0),
    ("dense lod_bias4", "dense", None, 16, 64, 0.0, 4.0),
    ("vq6 lod_bias4", "vq", 6, 16, 64, 0.0, 4.0),
]


def run_variant(args: tuple) -> dict:
    name, kind, bits, feat, hidden, warm, lod_bias, scene, steps, max_level = args
    import torch

    import engine.decoder
    engine.decoder.HIDDEN = hidden  # read when a decoder is built (CPU experiment only)
    from engine.data import load_dataset
    from engine.evaluate import evaluate
    from engine.field import InferenceField
    from engine.grids import kmeans_grid_from_dense
    from engine.train import DEFAULT_GRID_LR, TrainSettings, Trainer, new_field, trainable_from_inference
    torch.set_num_threads(1)
    torch.manual_seed(0)
    train, test = load_dataset(scene, "train"), load_dataset(scene, "test")
    t0 = time.perf_counter()
    if warm > 0:
        n1 = int(steps * warm)
        dense = Trainer(new_field(train, "dense", None, max_level, 2, feat), train,
                        TrainSettings(steps=n1, batch_rays=2048, grid_lr=DEFAULT_GRID_LR["dense"]))
        dense.step(n1)
        d = dense.freeze()
        km = InferenceField(d.scene_center, d.scene_half_size, d.octree, d.base_level,
                            kmeans_grid_from_dense(d.levels, bits), d.corners, d.decoder, "kmeans", d.n_lods, {})
        trainer = Trainer(trainable_from_inference(km), train,
                          TrainSettings(steps=steps - n1, batch_rays=2048, grid_lr=DEFAULT_GRID_LR["vq"], prune_at=()))
        trainer.step(steps - n1)
    else:
        trainer = Trainer(new_field(train, kind, bits, max_level, 2, feat), train,
                          TrainSettings(steps=steps, batch_rays=2048, grid_lr=DEFAULT_GRID_LR[kind], lod_bias=lod_bias))
        trainer.step(steps)
    field = trainer.freeze()
    row = evaluate(field, test, lods=[field.max_lod], device="cpu")[0]
    return {"variant": name, "grid": kind, "bits": bits, "feature_dim": feat, "hidden": hidden,
            "dense_warm_start": warm, "lod_bias": lod_bias, "steps": steps, "max_level": max_level, "psnr": round(row["psnr"], 3),
            "ssim": round(row["ssim"], 4), "train_s": round(time.perf_counter() - t0, 1),
            "test_images": row["images"], "device": "cpu", "date": datetime.date.today().isoformat(), "commit": git_commit()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--max-level", type=int, default=6)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", default="docs/results/vq_gap_cpu.json")
    ap.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    args = ap.parse_args()
    only = [v for v in args.only.split(",") if v]
    variants = [v for v in VARIANTS if not only or v[0] in only]
    out = Path(args.json)
    kept = [r for r in json.loads(out.read_text()) if r["variant"] not in only] if only and out.exists() else []
    from engine.scenes import make_scene
    with tempfile.TemporaryDirectory() as tmp:
        scene = str(make_scene(Path(tmp), n_train=40, n_test=6, n_val=1, resolution=args.resolution))
        jobs = [(*v, scene, args.steps, args.max_level) for v in variants]
        with ProcessPoolExecutor(args.jobs) as pool:
            rows = kept
            for row in pool.map(run_variant, jobs):
                print(f"{row['variant']:22s} {row['psnr']:6.2f} dB  ({row['train_s']:.0f} s)", flush=True)
                rows.append(row)
    order = [v[0] for v in VARIANTS]
    rows.sort(key=lambda r: order.index(r["variant"]) if r["variant"] in order else len(order))
    base = {(r["feature_dim"], r["hidden"], r.get("lod_bias", 2.0)): r["psnr"] for r in rows if r["grid"] == "dense"}
    lines = [f"# vq vs dense gap on our procedural scene (CPU, {args.resolution}x{args.resolution}, "
             f"{2 ** args.max_level}^3 cells, {args.steps} steps of 2,048 rays)", "",
             "| variant | F | decoder hidden | dense warm start | lod bias | PSNR (finest LOD) | below dense of the same "
             "F/hidden/lod bias |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        bias = r.get("lod_bias", 2.0)
        gap = base.get((r["feature_dim"], r["hidden"], bias))
        gap_text = f"{gap - r['psnr']:.2f} dB" if gap is not None and r["grid"] == "vq" else ""
        lines.append(f"| {r['variant']} | {r['feature_dim']} | {r['hidden']} | {r['dense_warm_start'] or ''} | "
                     f"{bias:g} | {r['psnr']:.2f} | {gap_text} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
