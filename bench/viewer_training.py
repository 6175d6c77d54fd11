"""Live training inside the viewer: the real App and frame loop (GLFW Null platform + EGL, offscreen), a data set,
the camera orbiting every frame.

    python bench/viewer_training.py [--data ../shared/data/nerf_synthetic_400/lego] [--model MODEL.vbnf]
        [--size 800] [--seconds 30] [--baseline-seconds 60] [--out docs/results/viewer_training.json]

1. Baseline: a plain `Trainer.step` loop with `vbnf train`'s defaults for the device (a new field, CUDA_BATCH rays
   on CUDA) for --baseline-seconds: its steps/s is `vbnf train`'s rate on a new model. Its frozen field is the
   model the viewer opens (unless --model is given). Then a plain loop continuing that model with the viewer's
   live settings (same model, batch and kernels, nothing else running) for --seconds: the rate live training is
   compared with (`train_vs_plain_loop`; a new model's steps cost differently from a trained one's).
2. Live training in the App, camera orbiting: view fps and training steps/s (default share), then the same with
   "train at full speed"; the val PSNR (finest LOD, --val-views views) before and after gives dB per minute.
3. A scripted session (idle waiting off so every frame is timed): open the model, slide the LOD through every level,
   stream the whole file, switch bits 6 -> 4 -> 6, cycle the modes, toggle the split view, train for --seconds.
   Frame times are the UI thread's work per frame (Stats.frame_ms: everything but the frame-rate cap's sleep):
   median, p99, max, per phase and overall.
Writes one row per device into --out (rows of other devices are kept), with the date and commit.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import imgui_bundle  # noqa: E402,F401  (before glfw: one libglfw)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100.0 * (len(s) - 1))))]


def frame_summary(ms: list[float]) -> dict:
    return {"frames": len(ms), "median_ms": round(statistics.median(ms), 2) if ms else 0.0,
            "p99_ms": round(percentile(ms, 99), 2), "max_ms": round(max(ms), 2) if ms else 0.0}


def commit() -> str:
    """This checkout's commit (bench/provenance.py; VBNF_COMMIT overrides it where the tree is a copy)."""
    from provenance import git_commit  # bench/ is on sys.path when this script runs
    return git_commit()


def baseline(data: str, device, seconds: float, max_level: int | None, downscale: int):
    """vbnf train's defaults for `device`, a plain step loop: (steps/s, trainer)."""
    from engine.data import load_dataset
    from engine.train import DEFAULT_GRID_LR, TrainSettings, Trainer, new_field
    from engine.train_cli import CPU_MAX_LEVEL, CUDA_BATCH, CUDA_MAX_LEVEL
    dataset = load_dataset(data, "train", downscale=downscale)
    cuda = device.type == "cuda"
    settings = TrainSettings(batch_rays=CUDA_BATCH if cuda else TrainSettings.batch_rays, grid_lr=DEFAULT_GRID_LR["vq"])
    level = max_level or (CUDA_MAX_LEVEL if cuda else CPU_MAX_LEVEL)
    trainer = Trainer(new_field(dataset, "vq", 6, level, 2, 16, 0, device), dataset, settings, device)
    trainer.step(2)  # kernels compiled, caches warm
    sync(device)
    t0, n, chunk = time.perf_counter(), 0, 1
    while time.perf_counter() - t0 < seconds:
        c0 = time.perf_counter()
        trainer.step(chunk)  # vbnf train takes 50 at a time; chunks of about 0.5 s keep the duration honest
        sync(device)
        n += chunk
        chunk = max(1, min(50, round(chunk * 0.5 / max(time.perf_counter() - c0, 1e-6))))
    return n / (time.perf_counter() - t0), trainer


def plain_loop(model_field, data: str, device, seconds: float, downscale: int) -> float:
    """Steps/s of a plain Trainer.step loop continuing `model_field` with the viewer's live settings (same model,
    batch and kernels as the App's live training, nothing else running): the rate live training is compared with."""
    from engine.data import load_dataset
    from engine.train import Trainer, trainable_from_inference
    from viewer.training_session import live_settings
    dataset = load_dataset(data, "train", downscale=downscale)
    trainer = Trainer(trainable_from_inference(model_field), dataset, live_settings(model_field, device.type),
                      device)
    trainer.step(2)
    sync(device)
    t0, n, chunk = time.perf_counter(), 0, 1
    while time.perf_counter() - t0 < seconds:
        c0 = time.perf_counter()
        trainer.step(chunk)
        sync(device)
        n += chunk
        chunk = max(1, min(50, round(chunk * 0.5 / max(time.perf_counter() - c0, 1e-6))))
    return n / (time.perf_counter() - t0)


def sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def val_psnr(field, val, views: int) -> float:
    from engine.cameras import select_cameras
    from engine.data import Dataset  # noqa: F401
    from engine.evaluate import evaluate
    import dataclasses
    n = min(views, val.images.shape[0])
    sub = dataclasses.replace(val, images=val.images[:n], cameras=select_cameras(val.cameras, list(range(n))))
    return evaluate(field, sub, lods=[field.max_lod], device="auto")[0]["psnr"]


def orbit_frames(app, seconds: float) -> dict:
    """Frames with the camera orbiting for `seconds`: fps and the UI thread's work per frame."""
    ms, t0, frames = [], time.perf_counter(), 0
    steps0 = app.actions.training.trainer.step_count if app.actions.training and app.actions.training.trainer else 0
    while time.perf_counter() - t0 < seconds:
        app.state.camera.orbit(3.0, 0.0)
        app.frame()
        frames += 1
        ms.append(app.state.stats.frame_ms)
    wall = time.perf_counter() - t0
    session = app.actions.training
    steps = (session.trainer.step_count - steps0) if session and session.trainer else 0
    return {"fps": round(frames / wall, 1), "train_steps_per_s": round(steps / wall, 2),
            "train_share": round(app.state.training.share, 3), **frame_summary(ms)}


def wait_training_ready(app, timeout: float = 600.0) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        app.frame()
        session = app.actions.training
        if session is not None and (session.trainer is not None and session.trainer.step_count > 0 or session.error):
            break
    if app.actions.training is None or app.actions.training.error:
        raise SystemExit(f"live training did not start: {app.state.error or app.state.training.status}")


def scripted_session(app, seconds: float) -> dict:
    """The scripted viewing session; per phase and overall frame summaries of the UI thread's work."""
    phases: dict[str, list[float]] = {}

    def run(name: str, until, limit: float = 120.0, orbit: bool = False) -> None:
        ms = phases.setdefault(name, [])
        deadline = time.perf_counter() + limit
        while True:
            if orbit:
                app.state.camera.orbit(3.0, 0.0)
            app.frame()
            ms.append(app.state.stats.frame_ms)
            if until() or time.perf_counter() > deadline:
                break

    s = app.state
    settled = lambda: not (s.stats.refining or app.view.scheduler.busy() or app.models.preparing())  # noqa: E731
    run("open", settled)
    for lod in range(s.model.max_lod + 1):
        s.lod = lod
        run("lod", settled)
    app.actions.simulate_download()
    run("stream", lambda: s.byte_budget is None and settled())
    for bits in (6, 4, 6):
        s.bits = bits
        run("bits", settled)
    s.bits = None
    for mode in ("depth", "normal", "samples", "level", "rgb"):
        s.render_mode = mode
        run("modes", settled)
    s.compare.enabled = True
    run("split", settled)
    s.compare.enabled = False
    run("split", settled)
    app.actions.start_training()
    end = time.perf_counter() + seconds
    run("train", lambda: time.perf_counter() > end, limit=seconds + 600, orbit=True)
    app.actions.pause_training()
    everything = [v for ms in phases.values() for v in ms]
    return {"overall": frame_summary(everything), **{k: frame_summary(v) for k, v in phases.items()}}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "nerf_synthetic_400" / "lego"))
    ap.add_argument("--model", default=None, help="open this model (default: the baseline's frozen field)")
    ap.add_argument("--size", type=int, default=800, help="window width and height, pixels")
    ap.add_argument("--seconds", type=float, default=30.0, help="live training per measurement")
    ap.add_argument("--baseline-seconds", type=float, default=60.0)
    ap.add_argument("--max-level", type=int, default=None, help="baseline model (default: vbnf train's)")
    ap.add_argument("--downscale", type=int, default=1)
    ap.add_argument("--val-views", type=int, default=8)
    ap.add_argument("--cpu", action="store_true", help="render and train on the CPU even with CUDA")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "viewer_training.json"))
    args = ap.parse_args()

    import torch
    from engine.data import load_dataset
    from engine.fileformat import save_model
    from viewer.app import App

    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    print(f"baseline: vbnf train defaults on {device}, {args.baseline_seconds:.0f} s", flush=True)
    base_rate, trainer = baseline(args.data, device, args.baseline_seconds, args.max_level, args.downscale)
    print(f"  {base_rate:.2f} steps/s", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="vbnf_bench_"))
    model = args.model
    if model is None:
        model = str(tmp / "baseline.vbnf")
        save_model(model, trainer.freeze({"dataset": str(Path(args.data).resolve())}))
    del trainer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    from engine.fileformat import load_model
    plain_rate = plain_loop(load_model(model), args.data, device, args.seconds, args.downscale)
    print(f"plain Trainer.step loop on the model with the live settings: {plain_rate:.2f} steps/s", flush=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    val = load_dataset(args.data, "val", downscale=args.downscale)

    app = App(model, args.size, args.size, headless=True, cpu_only=args.cpu, output_dir=str(tmp), idle_wait=False)
    try:
        app.state.show_panel = True
        app.state.training.dataset_path = str(Path(args.data).resolve())
        row = {"date": datetime.date.today().isoformat(), "commit": commit(),
               "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
               "render_path": app.state.stats.render_path, "training_device": app.state.training.device,
               "size": [args.size, args.size], "data": Path(args.data).name, "model": Path(model).name,
               "vbnf_train_steps_per_s": round(base_rate, 2), "plain_loop_steps_per_s": round(plain_rate, 2)}
        app.run_until_idle(600)
        before = val_psnr(app.models.current.full.field, val, args.val_views)
        app.actions.start_training()
        wait_training_ready(app)
        row["batch"] = app.state.training.batch
        t_live = time.perf_counter()
        live = orbit_frames(app, args.seconds)
        app.state.training.full_speed = True
        full = orbit_frames(app, args.seconds)
        app.state.training.full_speed = False
        live_minutes = (time.perf_counter() - t_live) / 60.0
        app.actions.pause_training()
        snapshot = None
        deadline = time.perf_counter() + 60
        while snapshot is None and time.perf_counter() < deadline:
            snapshot = app.actions.training.take_snapshot()
            time.sleep(0.05)
        after = val_psnr(snapshot or app.actions.training.trainer.freeze(), val, args.val_views)
        for entry in (live, full):
            entry["train_vs_plain_loop"] = round(entry["train_steps_per_s"] / plain_rate, 3) if plain_rate else 0.0
        row.update({"while_training": live, "full_speed": full,
                    "val_psnr_before": round(before, 3), "val_psnr_after": round(after, 3),
                    "live_minutes": round(live_minutes, 2),
                    "psnr_gain_db_per_minute": round((after - before) / live_minutes, 3) if live_minutes else 0.0})
        print(json.dumps(row, indent=1), flush=True)
        app.actions.stop_training()
        app.actions.open_model(model)
        row["scripted_session"] = scripted_session(app, args.seconds)
        print(json.dumps(row["scripted_session"], indent=1), flush=True)
    finally:
        app.close()
    out = Path(args.out)
    rows = json.loads(out.read_text())["rows"] if out.exists() else []
    rows = [r for r in rows if r.get("device") != row["device"]] + [row]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bench": "bench/viewer_training.py", "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
