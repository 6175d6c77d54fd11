"""Viewer frame time on an offscreen EGL context: the viewer's own FieldView (scheduler, render path, fullscreen
pass) driven frame by frame while the camera orbits, so every frame renders a new image.

    python bench/viewer_frame.py MODEL [--frames 200] [--sizes 800x800,1920x1080] [--out docs/results/viewer.md]

On a CUDA machine with an EGL context on the GPU (headless servers: headless-gl/ first on LD_LIBRARY_PATH) the path
is cuda+interop: the marcher writes the GL texture through CUDA-GL interop. Elsewhere it is the CPU path, whose
renders run in a thread (the frame time then measures the UI thread only, and the render size adapts).
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from provenance import git_commit  # noqa: E402

import imgui_bundle  # noqa: E402,F401  (before glfw: one libglfw)
import moderngl  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--sizes", default="800x800,1920x1080")
    ap.add_argument("--out", default="docs/results/viewer.md")
    args = ap.parse_args()

    import torch
    from viewer.camera import default_camera
    from viewer.field_source import Models
    from viewer.field_view import FieldView
    from viewer.render_paths import choose_backend
    from viewer.state import AppState
    from viewer.training_session import DatasetCache

    ctx = moderngl.create_standalone_context(backend="egl", require=330)
    backend = choose_backend(ctx)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ctx.info["GL_RENDERER"]
    models, datasets = Models(), DatasetCache()
    source = models.open(args.model)
    field = source.full.field
    rows = []
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.split("x"))
        fbo = ctx.simple_framebuffer((w, h))
        view = FieldView(ctx, backend)
        state = AppState(lod=field.max_lod)
        state.camera = default_camera(field.scene_center, field.scene_half_size)
        times, sizes = [], []
        for i in range(args.frames + 10):
            state.camera.azimuth_deg += 1.0
            t0 = time.perf_counter()
            view.update(state, models, datasets, (0, 0, w, h), 1.0)
            fbo.use()
            a = view._side_image("a")
            if a is not None:
                view.field_pass.render(a, tuple(state.background), None, 0.5, (0, 0, w, h))
            ctx.finish()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if i >= 10:
                times.append((time.perf_counter() - t0) * 1000)
                want = view.wants.get("a")
                sizes.append(getattr(want, "size", None) if want is not None else None)
        view.release()
        fbo.release()
        ms = statistics.median(times)
        rows.append({"path": backend.name, "width": w, "height": h, "lod": field.max_lod, "frames": len(times),
                     "frame_ms_median": round(ms, 3), "fps": round(1000 / ms, 1),
                     "frame_ms_p95": round(sorted(times)[int(0.95 * len(times)) - 1], 3),
                     "device": device, "date": datetime.date.today().isoformat(), "commit": git_commit()})
        print(rows[-1], flush=True)
    lines = ["| path | window | LOD | frame ms (median) | fps | frame ms (p95) | frames | device |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['path']} | {r['width']}x{r['height']} | {r['lod']} | {r['frame_ms_median']:.2f} | "
                     f"{r['fps']:.0f} | {r['frame_ms_p95']:.2f} | {r['frames']} | {r['device']} |")
    text = "\n".join(lines) + (f"\n\nModel {Path(args.model).name}; the camera orbits 1 degree per frame, so every "
                               f"frame is a new render; frame = FieldView.update + fullscreen pass + glFinish. "
                               f"Path chosen: {backend.name} ({backend.reason}). {rows[0]['date']}.\n")
    if backend.name == "cpu":
        text += ("\nOn the CPU path a frame never waits for the field: the torch renderer runs in a thread and its "
                 "image arrives later (at a resolution the scheduler lowers while the camera moves), so this is the "
                 "UI thread's frame time, not the field's render time.\n")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
