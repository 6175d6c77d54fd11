"""Training-step speed (GPU): steps per second, how busy the GPU is, and peak memory, for dense and vq b=6 at the
default batch of `vbnf train`.

    python bench/train_speed.py DATA [--grids dense,vq6] [--warmup-steps 500] [--steps 500] [--label new]
        [--engine-root DIR] [--json docs/results/train_speed.json]

--engine-root imports `engine` from another checkout (e.g. an older commit's tree), so that an old and a new
trainer are timed in the same call, one process at a time. GPU busy is NVML's utilisation sampled every 20 ms while
the timed steps run (the share of time a kernel was running). Records are merged into the JSON by (label, grid).
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from overrides import parse_overrides
from provenance import git_commit  # bench/ is on sys.path when these files run as scripts

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--grids", default="dense,vq6")
    ap.add_argument("--warmup-steps", type=int, default=500)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--max-level", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16384)
    ap.add_argument("--label", default="current")
    ap.add_argument("--engine-root", default=str(REPO))
    ap.add_argument("--quality-steps", type=int, default=0,
                    help="also train this many steps (e.g. 10000), evaluating --eval-images val views every "
                         "--eval-every steps, and report the time to come within 0.5 dB of the final val PSNR")
    ap.add_argument("--train-set", dest="train_overrides", default="",
                    help="TrainSettings fields of the --quality-steps run, e.g. lod_bias=4")
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--eval-images", type=int, default=25)
    ap.add_argument("--json", default="docs/results/train_speed.json")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(args.engine_root).resolve()))
    import torch
    from engine.data import load_dataset

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    card = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu (smoke test only)"
    train = load_dataset(args.data, "train")
    records = []
    for name in args.grids.split(","):
        trainer = new_trainer(name, train, args.batch, args.max_level, device)
        for _ in range(0, args.warmup_steps, 50):
            trainer.step(50)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        busy = utilisation_sampler()
        t0 = time.perf_counter()
        for _ in range(0, args.steps, 50):
            trainer.step(50)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        util = busy()
        rec = {"label": args.label, "grid": name, "batch": args.batch, "max_level": args.max_level,
               "steps_per_s": round(args.steps / seconds, 1), "gpu_busy_pct": util,
               "peak_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if device.type == "cuda" else None,
               "device": card, "date": datetime.date.today().isoformat(), "commit": commit()}
        del trainer
        if args.quality_steps:
            rec.update(time_to_quality(args, name, train, device))
        records.append(rec)
        print(json.dumps(rec), flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    path = Path(args.json)
    old = json.loads(path.read_text()) if path.exists() else []
    old = old if isinstance(old, list) else []
    keys = {(r["label"], r["grid"]) for r in records}
    path.write_text(json.dumps([r for r in old if (r.get("label"), r.get("grid")) not in keys] + records, indent=1))
    print("| label | grid | steps/s | GPU busy % | peak GB |\n|---|---|---|---|---|")
    for r in records:
        print(f"| {r['label']} | {r['grid']} | {r['steps_per_s']} | {r['gpu_busy_pct']} | {r['peak_gb']} |")
    return 0


def new_trainer(grid: str, train, batch: int, max_level: int, device, steps: int = 20000, overrides: str = ""):
    """A Trainer on a new field of `grid` ("dense", or a kind and bits: "vq6", "random8") with `vbnf train`'s
    learning rate for the kind; `steps` sets the learning-rate schedule (bench/train_profile.py uses it too);
    overrides: TrainSettings fields, 'lod_bias=4,seed=1'."""
    from engine.train import DEFAULT_GRID_LR, TrainSettings, Trainer, new_field
    kind = "dense" if grid == "dense" else grid.rstrip("0123456789")
    bits = None if kind == "dense" else int(grid[len(kind):])
    settings = TrainSettings(steps=steps, batch_rays=batch, grid_lr=DEFAULT_GRID_LR[kind])
    settings = replace(settings, **parse_overrides(overrides, settings))
    return Trainer(new_field(train, kind, bits, max_level, 2, device=device), train, settings, device)


def time_to_quality(args, grid: str, train, device) -> dict:
    """A fresh run of --quality-steps steps, timed without its evaluations: val PSNR (finest LOD) every --eval-every
    steps, and the training seconds at which it first came within 0.5 dB of the final value."""
    import torch
    from engine.data import load_dataset
    from engine.evaluate import evaluate
    val = load_dataset(args.data, "val", max_images=args.eval_images)
    trainer = new_trainer(grid, train, args.batch, args.max_level, device, steps=args.quality_steps,
                          overrides=args.train_overrides)
    settings = trainer.settings
    curve, seconds = [], 0.0
    while trainer.step_count < settings.steps:
        t0 = time.perf_counter()
        for _ in range(0, min(args.eval_every, settings.steps - trainer.step_count), 50):
            trainer.step(50)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        field = trainer.freeze()
        psnr = evaluate(field, val, lods=[field.max_lod], device=str(device))[0]["psnr"]
        curve.append((trainer.step_count, round(seconds, 1), round(psnr, 3)))
        print(f"  {grid}: step {trainer.step_count}, {seconds:.0f} s, val {psnr:.2f} dB", flush=True)
    final = curve[-1][2]
    reached = next(s for _, s, p in curve if p >= final - 0.5)
    return {"quality_steps": settings.steps, "val_psnr_final": final, "seconds_to_within_0_5_db": reached,
            "val_curve": curve, "val_images": len(val.image_paths), "train_overrides": args.train_overrides or None}


def utilisation_sampler():
    """Starts sampling NVML's GPU utilisation; the returned function stops and gives the mean (None without NVML)."""
    try:
        import pynvml
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:  # noqa: BLE001 - no NVML: no utilisation figure
        return lambda: None
    samples, stop = [], threading.Event()

    def run():
        while not stop.is_set():
            samples.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            time.sleep(0.02)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def finish():
        stop.set()
        thread.join()
        return round(sum(samples) / len(samples), 1) if samples else None
    return finish


def commit() -> str:
    """This checkout's commit (bench/provenance.py; VBNF_COMMIT overrides it where there is no git)."""
    return git_commit()


if __name__ == "__main__":
    sys.exit(main())
