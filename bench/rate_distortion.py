"""Rate-distortion benchmark: PSNR against file bytes for `vbnf train --size` at several budgets, plus dense.

    python bench/rate_distortion.py DATA [--budgets 0.1,0.25,0.5,1,2] [--dense] [--split test]
        [--scene lego] [--json docs/results/rate_distortion.json] [--plot docs/rate_distortion.png]
    python bench/rate_distortion.py DATA --replot   (the plot from the records already in --json)
    python bench/rate_distortion.py DATA --split val --eval-images 25 --budgets 0.5 --set lod_bias=3 --tag a
        (a probe of one recipe setting on validation views; settings are chosen there, never on test views)
    python bench/rate_distortion.py DATA --evaluate /tmp/rd_models/lego_0.5MB_a.vbnf --from-json PROBES.json
        (the test-split records of a probe's model, once val has chosen it: no second training; records are merged
        by scene, --tag and budget, so give each evaluated file its own --tag when several go into one JSON)

Each budget trains one model with the project's recipe (engine/recipe.py) and evaluates every LOD prefix of it:
every prefix is an extra point (its bytes are the prefix's). Records (one per model and LOD) are merged into the JSON
by (scene, tag, budget): scene, tag, budget_bytes, file_bytes, lod, prefix_bytes, psnr, ssim, train_s, steps,
recipe, peak_gb, split, images, device, date, commit. For an instant-ngp data set every 8th frame is the test split
and is left out of training. The plot marks published anchors (NeRF-Synthetic, 800x800) with their scene sets.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.cameras import select_cameras  # noqa: E402
from engine.data import NGP_TEST_EVERY, load_dataset  # noqa: E402
from engine.evaluate import evaluate  # noqa: E402
from engine.fileformat import load_model, model_layout, save_model  # noqa: E402
from engine.recipe import Recipe, recipe_for_budget, train_for_budget  # noqa: E402
from engine.train import DEFAULT_GRID_LR, TrainSettings, Trainer, new_field  # noqa: E402
from engine.train_cli import default_batch  # noqa: E402
from overrides import parse_overrides  # noqa: E402
from provenance import git_commit  # noqa: E402

ANCHORS = [  # (label, bytes, PSNR dB, scene set): published results on NeRF-Synthetic at 800x800
    ("Masked Wavelet (lego)", 0.79e6, 34.9, "lego"),
    ("BiRF (8-scene mean)", 0.5e6, 32.0, "NeRF-Synthetic mean"),
    ("CNC (8-scene mean)", 0.4e6, 33.2, "NeRF-Synthetic mean"),
    ("instant-ngp\n(8-scene mean, uncompressed)", 25e6, 33.2, "NeRF-Synthetic mean"),
]


def commit() -> str:
    """This checkout's commit (bench/provenance.py; VBNF_COMMIT overrides it where there is no git)."""
    return git_commit()


def train_split(data: str):
    """The training images: for instant-ngp data (no splits) every frame except the every-8th test frames."""
    train = load_dataset(data, "train")
    if (Path(data) / "transforms.json").exists() and not (Path(data) / "transforms_train.json").exists():
        keep = [i for i in range(train.images.shape[0]) if i % NGP_TEST_EVERY]
        train = dataclasses.replace(train, images=train.images[keep],
                                    alphas=None if train.alphas is None else train.alphas[keep],
                                    cameras=select_cameras(train.cameras, keep),
                                    image_paths=[train.image_paths[i] for i in keep])
    return train


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--budgets", default="0.1,0.25,0.5,1,2", help="MB (10^6 bytes), comma-separated")
    ap.add_argument("--dense", action="store_true", help="also train the dense grid with the same steps")
    ap.add_argument("--steps", type=int, default=None, help="steps of every model (default: the recipe's)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--eval-images", type=int, default=None)
    ap.add_argument("--scene", default=None, help="scene name in the records (default: the data folder's name)")
    ap.add_argument("--set", dest="overrides", default="", help="recipe fields, e.g. lod_bias=3")
    ap.add_argument("--train-set", dest="train_overrides", default="",
                    help="TrainSettings fields of the vq phase, e.g. batch_rays=32768,lr_final_ratio=0.03")
    ap.add_argument("--tag", default="", help="names a probe's records")
    ap.add_argument("--out-dir", default="/tmp/rd_models")
    ap.add_argument("--json", default="docs/results/rate_distortion.json")
    ap.add_argument("--plot", default="docs/rate_distortion.png")
    ap.add_argument("--replot", action="store_true", help="only draw --plot from the records in --json")
    ap.add_argument("--evaluate", metavar="MODEL", default=None,
                    help="train nothing: evaluate this file (a probe's model, chosen on val) on --split and record "
                         "it under --tag, with the training time, steps, recipe and peak of its record in --from-json")
    ap.add_argument("--from-json", default="docs/results/rate_distortion_probes.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")  # the recipe's phases and bits
    if args.replot:
        plot(json.loads(Path(args.json).read_text()), Path(args.plot))
        return 0

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    card = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    scene = args.scene or Path(args.data).resolve().name
    train = train_split(args.data)
    test = load_dataset(args.data, args.split, max_images=args.eval_images)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    batch = default_batch(device)
    records: list[dict] = []

    def measure(name: str, field, budget: int | None, seconds: float, steps: int, recipe: dict | None,
                peak: float | None = None, saved: Path | None = None, overrides: str | None = None) -> None:
        path = saved or out_dir / f"{scene}_{name}{args.tag}.vbnf"
        if saved is None:
            save_model(path, field, {"recipe": recipe} if recipe else None)
        layout = model_layout(path)
        if peak is None and device.type == "cuda":
            peak = torch.cuda.max_memory_allocated() / 1e9
        rows = evaluate(field, test, device=str(device))
        for r in rows:
            records.append({"scene": scene, "tag": args.tag, "name": name, "budget_bytes": budget,
                            "file_bytes": layout.total_bytes, "lod": r["lod"],
                            "prefix_bytes": layout.lod_prefix_bytes[r["lod"]], "psnr": round(r["psnr"], 3),
                            "ssim": round(r["ssim"], 4), "train_s": round(seconds, 1), "steps": steps,
                            "recipe": recipe, "train_overrides": overrides or args.train_overrides or None,
                            "peak_gb": None if peak is None else round(peak, 2),
                            "split": args.split, "images": r["images"], "device": card,
                            "date": datetime.date.today().isoformat(), "commit": commit()})
        write_records(Path(args.json), records)  # after every model: a later one may not finish
        best = rows[-1]
        print(f"{name}: {layout.total_bytes:,} bytes, {best['psnr']:.2f} dB / {best['ssim']:.4f} at LOD "
              f"{best['lod']}, trained {seconds:.0f} s, peak {peak or 0:.1f} GB", flush=True)

    if args.evaluate:
        path = Path(args.evaluate)
        trained = [r for r in json.loads(Path(args.from_json).read_text()) if r["scene"] == scene and
                   path.name == f"{scene}_{r['name']}{r['tag']}.vbnf"]
        if not trained:
            raise SystemExit(f"{args.from_json} has no record of {path.name}: its training time is unknown")
        r = trained[-1]
        measure(r["name"], load_model(path), r["budget_bytes"], r["train_s"], r["steps"], r["recipe"],
                r["peak_gb"], saved=path, overrides=r.get("train_overrides"))
        print_table(records)
        if args.plot:
            plot(json.loads(Path(args.json).read_text()), Path(args.plot))
        return 0

    base = TrainSettings(batch_rays=batch, grid_lr=DEFAULT_GRID_LR["dense"])
    for mb in [float(v) for v in args.budgets.split(",") if v]:
        budget = int(mb * 1e6)
        recipe = recipe_for_budget(budget, device.type, args.steps, train.alphas is not None)
        recipe = dataclasses.replace(recipe, **parse_overrides(args.overrides, recipe))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        tuner, recipe = train_for_budget(train, recipe, dataclasses.replace(
            base, grid_lr=DEFAULT_GRID_LR["vq"], **parse_overrides(args.train_overrides, base)), device,
            progress=progress_printer(t0))
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        field = tuner.freeze()
        del tuner
        measure(f"{mb:g}MB", field, budget, seconds, recipe.steps, dataclasses.asdict(recipe))
        del field
    if args.dense:
        steps = args.steps or Recipe(budget_bytes=1).steps
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        max_level = recipe_for_budget(10**9, device.type, masked=train.alphas is not None).max_level
        trainer = Trainer(new_field(train, "dense", None, max_level, 2, device=device), train,
                          dataclasses.replace(base, steps=steps), device)
        while trainer.step_count < steps:
            trainer.step(min(50, steps - trainer.step_count))
        if device.type == "cuda":
            torch.cuda.synchronize()
        measure("dense", trainer.freeze(), None, time.perf_counter() - t0, steps, None)
        del trainer

    print(f"wrote {args.json} ({len(records)} new records)")
    print_table(records)
    if args.plot and records:
        plot(json.loads(Path(args.json).read_text()), Path(args.plot))
    return 0


def progress_printer(t0: float, every: int = 2000):
    """A train_for_budget progress callback printing the phase, its step and the seconds since t0 every `every`
    steps: a run killed by a time limit still shows how far it got."""
    printed = {}  # phase -> the step last printed

    def progress(phase: str, trainer) -> None:
        done = trainer.step_count == trainer.settings.steps
        if trainer.step_count - printed.get(phase, 0) >= every or done and printed.get(phase) != trainer.step_count:
            printed[phase] = trainer.step_count
            print(f"  {phase} step {trainer.step_count:,}/{trainer.settings.steps:,} at "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    return progress


def write_records(path: Path, records: list[dict]) -> None:
    """Merges `records` into the JSON at `path` by (scene, tag, name), replacing older records of those models."""
    old = json.loads(path.read_text()) if path.exists() else []
    new_keys = {(r["scene"], r["tag"], r["name"]) for r in records}
    merged = [r for r in old if (r["scene"], r.get("tag", ""), r["name"]) not in new_keys] + records
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=1))


def print_table(records: list[dict]) -> None:
    print("| scene | model | file bytes | LOD | prefix bytes | PSNR | SSIM | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in records:
        print(f"| {r['scene']}{r['tag']} | {r['name']} | {r['file_bytes']:,} | {r['lod']} | {r['prefix_bytes']:,} | "
              f"{r['psnr']:.2f} | {r['ssim']:.4f} | {r['train_s']:.0f} |")


def plot(records: list[dict], out: Path) -> None:
    """Bytes (log axis) against PSNR: each model's full file as a line over budgets, its prefixes as small dots,
    and the published anchors (their scene sets in the labels)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for scene in sorted({r["scene"] for r in records if not r["tag"] and r["split"] == "test"}):
        rows = [r for r in records if r["scene"] == scene and not r["tag"] and r["split"] == "test"]
        full = sorted((r for r in rows if r["prefix_bytes"] == r["file_bytes"] and r["name"] != "dense"),
                      key=lambda r: r["file_bytes"])
        line, = ax.plot([r["file_bytes"] for r in full], [r["psnr"] for r in full], "o-", label=f"vbnf, {scene}")
        ax.scatter([r["prefix_bytes"] for r in rows if r["prefix_bytes"] != r["file_bytes"]],
                   [r["psnr"] for r in rows if r["prefix_bytes"] != r["file_bytes"]], s=8, color=line.get_color(),
                   alpha=0.5, label=f"LOD prefixes, {scene}")
        dense = [r for r in rows if r["name"] == "dense" and r["prefix_bytes"] == r["file_bytes"]]
        if dense:
            ax.scatter([dense[0]["file_bytes"]], [dense[0]["psnr"]], marker="s", color=line.get_color(),
                       label=f"vbnf dense grid, {scene}")
    for label, size, value, scene_set in ANCHORS:
        ax.scatter([size], [value], marker="*", s=80, color="black")
        right = size > 5e6  # labels of the rightmost anchors run to the left, inside the axes
        ax.annotate(label, (size, value), textcoords="offset points", xytext=(-6, -6) if right else (4, 4), fontsize=7,
                    ha="right" if right else "left", va="top" if right else "baseline")
    ax.set_xscale("log")
    ax.set_xlabel("bytes (file or LOD prefix)")
    ax.set_ylabel("PSNR (dB), test views")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Rate-distortion (vbnf: lego at 400x400, 200 test views; fox at 1080x1920, 9 held-out frames; "
                 "anchors: published, NeRF-Synthetic at 800x800)", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
