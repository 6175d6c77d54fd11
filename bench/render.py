"""Rendering speed of the fused CUDA marcher (and of the torch reference) per LOD and resolution (GPU).

    python bench/render.py [--model PATH.vbnf] [--kinds dense,vq4] [--camera RADIUS,ELEVATION,FOV_Y]
        [--frames 40] [--sizes 800x800,1920x1080] [--json docs/results/render.json] [--md docs/results/render.md]

Without --model, synthetic fields stand in for a trained scene (6 LODs, base level 2, finest level 7, a spherical
shell of occupied cells, random features and decoder with a density bias so rays cross partly transparent layers),
one per entry of --kinds (dense, vqB, randomB, kmeansB). Cameras orbit the scene centre at RADIUS world units and
ELEVATION degrees, one azimuth per frame (FOV_Y degrees vertical field of view).

Per (field, LOD, size): ms per frame (CUDA events around each launch, median over the orbit), fps, samples per frame
(MLP evaluations, from the "samples" mode) and per second, PSNR against the torch reference (the full LOD at the
timed size; coarser LODs at 400x400 to save time), and the floor analysis: FLOPs and bytes per sample against the
card's measured FP32 rate (SGEMM, TF32 off) and copy bandwidth. Also: the torch reference's time at 800x800 full LOD,
interop overhead per frame (map + mapped array + surface + unmap; EGL context on the GPU), the upload fallback, and
kernel variants (decoder in shared memory, codebooks in global memory, no path cache, no colour-MLP skip).
Writes JSON records (one per measurement, fields listed in `record`) and a markdown table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.cuda.marcher import (CudaMarcher, MarchTuning, PinholeCamera)
from engine.decoder import DIR_DIM, GEO_DIM, HIDDEN  # noqa: E402
from engine.field import InferenceField, NeuralField  # noqa: E402
from engine.gpu_render import march_rays_torch  # noqa: E402
from engine.grids import kmeans_grid_from_dense  # noqa: E402
from engine.octree import morton_encode, octree_from_finest_cells  # noqa: E402
from engine.render_target import DeviceBufferTarget  # noqa: E402
from provenance import git_commit  # noqa: E402


# ---------------------------------------------------------------------------------------------------------------
# Inputs


def shell_field(kind: str, bits: int | None, base_level: int = 2, n_lods: int = 6, radius: float = 0.3,
                width_cells: float = 1.5, density_bias: float = 3.5, seed: int = 0) -> InferenceField:
    """Synthetic stand-in for a trained scene: a spherical shell of occupied finest cells (plus sparse floaters)."""
    finest = base_level + n_lods - 1
    r = 1 << finest
    ax = torch.arange(r)
    xyz = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    dist = ((xyz + 0.5) / r - 0.5).norm(dim=1)
    gen = torch.Generator().manual_seed(seed)
    keep = ((dist - radius).abs() < width_cells / r) | (torch.rand(xyz.shape[0], generator=gen) < 1e-4)
    octree = octree_from_finest_cells(morton_encode(xyz[keep]), finest)
    train_kind = "dense" if kind == "kmeans" else kind
    net = NeuralField(octree, base_level, train_kind, feature_dim=16, bits=bits if train_kind != "dense" else None,
                      seed=seed)
    with torch.no_grad():
        for p in [*net.grid.features, *net.grid.codebooks]:
            p.copy_(torch.randn(p.shape, generator=gen) * 0.7)
        for p in net.grid.logits:
            p.copy_(torch.randn(p.shape, generator=gen))
        net.decoder["b1"][0] = density_bias
    field = net.freeze({"name": f"synthetic shell ({kind}{bits or ''})"})
    if kind == "kmeans":
        field = replace(field, levels=kmeans_grid_from_dense(field.levels, bits, iterations=5), grid_kind="kmeans")
    return field


def orbit_camera(center, radius: float, azimuth_deg: float, elevation_deg: float, fov_y_deg: float, width: int,
                 height: int) -> PinholeCamera:
    """Camera on a sphere around `center` looking at it, +z up (Blender's convention), square pixels."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    c = torch.as_tensor(center, dtype=torch.float64)
    eye = c + radius * torch.tensor([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)],
                                    dtype=torch.float64)
    back = (eye - c) / (eye - c).norm()
    right = torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), back)
    right = right / right.norm()
    up = torch.linalg.cross(back, right)
    c2w = torch.stack([right, up, back, eye], dim=1).float()
    focal = 0.5 * height / math.tan(0.5 * math.radians(fov_y_deg))
    return PinholeCamera(c2w, focal, focal, 0.5 * width, 0.5 * height, width, height)


# ---------------------------------------------------------------------------------------------------------------
# Measurements


def card_ceilings(device: torch.device) -> dict:
    """Measured copy bandwidth (bytes read + written per second) and FP32 FMA rate (SGEMM with TF32 off)."""
    n = 1 << 28  # 1 GiB of float32
    a = torch.empty(n, dtype=torch.float32, device=device).uniform_()
    b = torch.empty_like(a)
    for _ in range(2):
        b.copy_(a)
    times = []
    for _ in range(5):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        b.copy_(a)
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    bandwidth = 2 * 4 * n / statistics.median(times)
    del a, b
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    m = 8192
    x = torch.randn(m, m, device=device)
    y = torch.randn(m, m, device=device)
    x @ y
    times = []
    for _ in range(3):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        x @ y
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    return {"copy_bytes_per_s": bandwidth, "fp32_flops_per_s": 2 * m ** 3 / statistics.median(times)}


def time_frames(marcher: CudaMarcher, field, cams, lod: int, mode: str = "rgb", tuning=None,
                warmup: int = 3) -> list[float]:
    """ms of each frame (CUDA events around each launch on the current stream), after `warmup` frames."""
    cam0 = cams[0]
    target = DeviceBufferTarget(cam0.width, cam0.height)
    stream = marcher.stream()
    out = target.begin_cuda(mode, marcher.device, stream)
    for cam in cams[:warmup]:
        marcher.march(field, cam, lod, mode, (1.0, 1.0, 1.0), out, tuning=tuning)
    torch.cuda.synchronize()
    events = []
    for cam in cams:
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        marcher.march(field, cam, lod, mode, (1.0, 1.0, 1.0), out, tuning=tuning)
        e.record()
        events.append((s, e))
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in events]


# Kernel tunings timed over every LOD and size (the others only at full LOD, first size).
SWEEP_TUNINGS = {"rolled16x8": MarchTuning(), "rolled8x8": MarchTuning(block=(8, 8)),
                 "unrolled8x8": MarchTuning(mlp_rolled=False, block=(8, 8))}  # first: the default


def cuda_image(marcher: CudaMarcher, field, cam, lod: int, mode: str, tuning=None) -> torch.Tensor:
    target = DeviceBufferTarget(cam.width, cam.height)
    target.poison_(mode, marcher.device)
    out = target.begin_cuda(mode, marcher.device, marcher.stream())
    marcher.march(field, cam, lod, mode, (1.0, 1.0, 1.0), out, tuning=tuning)
    torch.cuda.synchronize()
    image = target.image().clone()
    if not torch.isfinite(image).all():
        raise SystemExit(f"{int((~torch.isfinite(image)).sum())} pixels not written")
    return image


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def flops_per_sample(feat: int, n_levels: int, colour: bool = True) -> int:
    """Multiply-adds x 2 of one occupied sample: gathers (8 corners x F per level), density MLP, colour MLP."""
    gather = n_levels * 8 * feat
    density = feat * HIDDEN + HIDDEN * (1 + GEO_DIM)
    color = (GEO_DIM + DIR_DIM) * HIDDEN + HIDDEN * 3
    return 2 * (gather + density + (color if colour else 0))


def bytes_per_sample(field: InferenceField, lod: int) -> int:
    """Bytes one occupied sample reads, counted once each, as if nothing were cached: descent nodes (8 B per level
    above the LOD's), per LOD the cell's corner entries (dense: 8 int32 rows; codebooks: 8 one- or two-byte
    indices) and 8 feature rows (dense only: codebooks live in shared memory or L1)."""
    level = field.base_level + lod
    total = 8 * level
    for k in range(lod + 1):
        rows = field.levels[k]
        if rows.features is not None:
            total += 8 * 4 + 8 * field.feature_dim * 4
        else:
            total += 8 * (1 if rows.codebook.shape[0] <= 256 else 2)
    return total


def interop_call_costs(ctx, marcher: CudaMarcher, cam, stream: int, frames: int) -> dict:
    """Per-frame cost of the interop steps alone (no kernel), pipelined (one synchronisation at the end), for the
    texture registered as an image (default map flags / write-discard), for a registered pixel buffer copied
    into the texture by GL, and for CUDA memory imported into GL once (interop "external": no map, a stream
    synchronisation, a GL copy and a fence per frame). Also the wall time spent in each driver call of the image
    variant, and interop_error_<tag> where a variant fell back to the upload path (its time is then not interop's)."""
    from cuda.bindings import driver

    from engine.render_target import GLTextureTarget
    out = {}
    for tag, interop, discard in (("image", "image", False), ("image_discard", "image", True),
                                  ("buffer", "buffer", True), ("external", "external", True)):
        target = GLTextureTarget(ctx, ctx.texture((cam.width, cam.height), 4, dtype="f1"), write_discard=discard,
                                 interop=interop)
        for _ in range(3):
            target.begin_cuda("rgb", marcher.device, stream)
            target.end_cuda(stream)
        ctx.finish()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(frames):
            target.begin_cuda("rgb", marcher.device, stream)
            target.end_cuda(stream)
        ctx.finish()
        torch.cuda.synchronize()
        out[f"interop_ms_{tag}"] = (time.perf_counter() - t0) * 1e3 / frames
        if target.interop_error is not None:
            out[f"interop_error_{tag}"] = target.interop_error
        if tag == "image":
            res, s = target._resource, driver.CUstream(stream)
            spent = {"map": 0.0, "array": 0.0, "unmap": 0.0}
            for _ in range(frames):
                t0 = time.perf_counter()
                driver.cuGraphicsMapResources(1, res, s)
                t1 = time.perf_counter()
                driver.cuGraphicsSubResourceGetMappedArray(res, 0, 0)
                t2 = time.perf_counter()
                driver.cuGraphicsUnmapResources(1, res, s)
                spent["map"] += t1 - t0
                spent["array"] += t2 - t1
                spent["unmap"] += time.perf_counter() - t2
            torch.cuda.synchronize()
            out.update({f"{k}_call_ms": v * 1e3 / frames for k, v in spent.items()})
        target.release()
    return out


def interop_overhead(marcher: CudaMarcher, field, cam, lod: int, frames: int = 200) -> dict:
    """Per-frame cost of the interop steps alone (map, mapped array, surface, unmap), and full frames through
    interop, through the upload fallback and into a device buffer; needs an EGL context on the GPU."""
    from engine.render_target import GLTextureTarget, egl_context
    from engine.gpu_render import RenderChoice, Renderer, gl_interop_unavailable_reason
    ctx, why = egl_context()
    if ctx is None:
        return {"error": why}
    try:
        why = gl_interop_unavailable_reason()
        if why is not None:
            return {"error": why}
        result = {"gl_renderer": ctx.info.get("GL_RENDERER", "?")}
        stream = marcher.stream()
        result.update(interop_call_costs(ctx, marcher, cam, stream, frames))
        tex = ctx.texture((cam.width, cam.height), 4, dtype="f1")
        target = GLTextureTarget(ctx, tex)
        for _ in range(3):
            target.begin_cuda("rgb", marcher.device, stream)
            target.end_cuda(stream)
        torch.cuda.synchronize()
        walls = []
        for _ in range(frames):
            t0 = time.perf_counter()
            target.begin_cuda("rgb", marcher.device, stream)
            target.end_cuda(stream)
            torch.cuda.synchronize()
            walls.append((time.perf_counter() - t0) * 1e3)
        result["interop_ms_synced"] = statistics.median(walls)
        # In a render loop nothing waits between frames: map + array + surface + unmap back to back, one sync.
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(frames):
            target.begin_cuda("rgb", marcher.device, stream)
            target.end_cuda(stream)
        torch.cuda.synchronize()
        result["interop_ms"] = (time.perf_counter() - t0) * 1e3 / frames
        # The same with a new surface object each frame (create + destroy after the frame).
        walls = []
        for _ in range(frames // 2):
            t0 = time.perf_counter()
            target.begin_cuda("rgb", marcher.device, stream)
            target.end_cuda(stream)
            target._destroy_surface(stream)
            walls.append((time.perf_counter() - t0) * 1e3)
        result["interop_ms_new_surface"] = statistics.median(walls)
        def frame_ms(path: str, into) -> float:
            """Median wall time of whole frames (render + GL finish + CUDA sync) through `path` into `into`."""
            renderer = Renderer(RenderChoice(path, "bench"))
            renderer.marcher = marcher
            walls = []
            for i in range(23):
                t0 = time.perf_counter()
                renderer.render(field, cam, lod, "rgb", (1.0, 1.0, 1.0), into)
                ctx.finish()
                torch.cuda.synchronize()
                if i >= 3:
                    walls.append((time.perf_counter() - t0) * 1e3)
            return statistics.median(walls)

        result["frame_ms_interop"] = frame_ms("cuda+interop", target)
        result["frame_ms_upload"] = frame_ms("cuda+upload", target)
        others = {kind: GLTextureTarget(ctx, ctx.texture((cam.width, cam.height), 4, dtype="f1"), interop=kind)
                  for kind in ("buffer", "external")}
        for kind, other in others.items():
            result[f"frame_ms_interop_{kind}"] = frame_ms("cuda+interop", other)
            if other.interop_error is not None:
                result[f"interop_error_{kind}"] = other.interop_error
        renderer = Renderer(RenderChoice("cuda+interop", "bench"))
        renderer.marcher = marcher
        renderer.render(field, cam, lod, "rgb", (1.0, 1.0, 1.0), target)
        ctx.finish()
        image_pixels = np.frombuffer(target.texture.read(), np.uint8)
        for kind, other in others.items():
            same = np.frombuffer(other.texture.read(), np.uint8)
            result[f"{kind}_equals_image_interop"] = bool((same == image_pixels).all())
            other.release()
        buffer = DeviceBufferTarget(cam.width, cam.height)
        walls = []
        for i in range(23):
            t0 = time.perf_counter()
            out = buffer.begin_cuda("rgb", marcher.device, stream)
            marcher.march(field, cam, lod, "rgb", (1.0, 1.0, 1.0), out)
            torch.cuda.synchronize()
            if i >= 3:
                walls.append((time.perf_counter() - t0) * 1e3)
        result["frame_ms_device_buffer_wall"] = statistics.median(walls)
        target.release()
        return result
    finally:
        ctx.release()


# ---------------------------------------------------------------------------------------------------------------


def record(**kw) -> dict:
    base = {"renderer": None, "width": None, "height": None, "lod": None, "grid": None, "bits": None,
            "ms_median": None, "fps": None, "psnr_vs_reference": None, "interop_ms": None, "device": None,
            "date": None}
    base.update(kw)
    return base


def parse_kinds(text: str) -> list[tuple[str, int | None]]:
    out = []
    for name in text.split(","):
        for kind in ("dense", "vq", "random", "kmeans"):
            if name.startswith(kind):
                rest = name[len(kind):]
                out.append((kind, int(rest) if rest else None))
                break
        else:
            raise SystemExit(f"unknown grid '{name}' (dense, vqB, randomB, kmeansB)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help=".vbnf model file (default: synthetic fields, see --kinds)")
    ap.add_argument("--kinds", default="vq4,dense", help="synthetic grids, e.g. dense,vq4,random8,kmeans6")
    ap.add_argument("--camera", default="4.0,30,39.6", help="orbit RADIUS,ELEVATION_DEG,FOV_Y_DEG")
    ap.add_argument("--frames", type=int, default=40, help="timed frames (azimuths) per configuration")
    ap.add_argument("--sizes", default="800x800,1920x1080")
    ap.add_argument("--reference-repeats", type=int, default=2, help="timed torch reference frames (800x800)")
    ap.add_argument("--json", default="docs/results/render.json")
    ap.add_argument("--md", default="docs/results/render.md")
    ap.add_argument("--no-interop", action="store_true")
    ap.add_argument("--quick", action="store_true",
                    help="the default tuning only (no tuning sweep, no variants): for trained models")
    args = ap.parse_args(argv)
    sweep = {"rolled16x8": SWEEP_TUNINGS["rolled16x8"]} if args.quick else SWEEP_TUNINGS

    if not torch.cuda.is_available():
        print("bench/render.py needs a CUDA GPU", file=sys.stderr)
        return 2
    device = torch.device("cuda", torch.cuda.current_device())
    name = torch.cuda.get_device_name(device)
    date = datetime.date.today().isoformat()
    radius, elevation, fov = (float(v) for v in args.camera.split(","))
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    ceilings = card_ceilings(device)
    print(f"{name}: copy {ceilings['copy_bytes_per_s'] / 1e12:.2f} TB/s, "
          f"fp32 {ceilings['fp32_flops_per_s'] / 1e12:.1f} TFLOP/s", flush=True)

    if args.model:
        from engine.fileformat import load_model
        fields = [(Path(args.model).stem, load_model(args.model))]
    else:
        fields = [(f"{k}{b or ''}", shell_field(k, b)) for k, b in parse_kinds(args.kinds)]

    marcher = CudaMarcher(device)
    records = []
    for label, field in fields:
        t0 = time.perf_counter()
        marcher.upload(field)
        gpu_field = field.to(device)
        center = [float(v) for v in field.scene_center]
        bits = field.bits
        grid = field.grid_kind
        print(f"{label}: {field.max_lod + 1} LODs, grid {grid}, bits {bits}; upload {time.perf_counter() - t0:.2f} s",
              flush=True)
        for lod in range(field.max_lod, -1, -1):
            for w, h in sizes:
                cams = [orbit_camera(center, radius, 360.0 * i / args.frames, elevation, fov, w, h)
                        for i in range(args.frames)]
                samples_img = [cuda_image(marcher, field, cam, lod, "samples") for cam in cams[:: max(1, len(cams) // 8)]]
                samples = statistics.mean(float(s.sum()) for s in samples_img)
                ref_size = (w, h) if lod == field.max_lod and (w, h) == sizes[0] else (400, 400)
                ref_cam = orbit_camera(center, radius, 0.0, elevation, fov, *ref_size)
                ref_ms = None
                if (w, h) == sizes[0]:
                    times = []
                    repeats = args.reference_repeats if ref_size == sizes[0] else 1
                    for _ in range(repeats):
                        torch.cuda.synchronize()
                        t1 = time.perf_counter()
                        ref = march_rays_torch(gpu_field, ref_cam, lod, "rgb", (1.0, 1.0, 1.0))
                        torch.cuda.synchronize()
                        times.append((time.perf_counter() - t1) * 1e3)
                    ref_ms = statistics.median(times)
                    psnr_cache = {tname: (psnr(cuda_image(marcher, field, ref_cam, lod, "rgb", tuning), ref), ref_size)
                                  for tname, tuning in sweep.items()}
                fl = flops_per_sample(field.feature_dim, lod + 1)
                by = bytes_per_sample(field, lod)
                floor_ms = max(samples * fl / ceilings["fp32_flops_per_s"],
                               samples * by / ceilings["copy_bytes_per_s"]) * 1e3
                for tname, tuning in sweep.items():
                    t0 = time.perf_counter()
                    ms = time_frames(marcher, field, cams, lod, tuning=tuning)
                    compile_s = time.perf_counter() - t0
                    med = statistics.median(ms)
                    quality, psnr_size = psnr_cache[tname]
                    rec = record(renderer="cuda", tuning=tname, width=w, height=h, lod=lod, grid=grid, bits=bits,
                                 ms_median=med, fps=1e3 / med, psnr_vs_reference=quality, device=name, date=date,
                                 model=label, psnr_size=f"{psnr_size[0]}x{psnr_size[1]}", ms_min=min(ms),
                                 ms_max=max(ms), samples_per_frame=samples, samples_per_s=samples / (med / 1e3),
                                 flops_per_sample=fl, bytes_per_sample=by, floor_ms=floor_ms,
                                 fp32_flops_per_s=ceilings["fp32_flops_per_s"],
                                 copy_bytes_per_s=ceilings["copy_bytes_per_s"], first_call_s=compile_s,
                                 camera={"radius": radius, "elevation": elevation, "fov_y": fov,
                                         "frames": args.frames})
                    records.append(rec)
                    print(f"  cuda[{tname}] lod {lod} {w}x{h}: {med:.3f} ms ({1e3 / med:.0f} fps), "
                          f"{samples / 1e6:.2f} M samples/frame, {samples / med / 1e6:.2f} G samples/s, floor "
                          f"{floor_ms:.3f} ms, PSNR {quality:.1f} dB @ {psnr_size[0]}x{psnr_size[1]}", flush=True)
                if ref_ms is not None and ref_size == sizes[0]:
                    records.append(record(renderer="torch", width=w, height=h, lod=lod, grid=grid, bits=bits,
                                          ms_median=ref_ms, fps=1e3 / ref_ms, psnr_vs_reference=float("inf"),
                                          device=name, date=date, model=label, repeats=args.reference_repeats))
                    print(f"  torch lod {lod} {w}x{h}: {ref_ms:.1f} ms", flush=True)

        # Variants at full LOD, first size.
        lod = field.max_lod
        w, h = sizes[0]
        cams = [orbit_camera(center, radius, 360.0 * i / args.frames, elevation, fov, w, h)
                for i in range(args.frames)]
        variants = () if args.quick else (("cb_global", MarchTuning(cb_shared=False)),
                                          ("no_path_cache", MarchTuning(path_cache=False)),
                                          ("no_rgb_skip", MarchTuning(rgb_min_weight=0.0)),
                                          ("persistent", MarchTuning(persistent=True)),
                                          ("const_weights", MarchTuning(w_shared=False)))
        for vname, tuning in variants:
            if vname == "cb_global" and grid == "dense":
                continue
            med = statistics.median(time_frames(marcher, field, cams, lod, tuning=tuning))
            records.append(record(renderer=f"cuda[{vname}]", width=w, height=h, lod=lod, grid=grid, bits=bits,
                                  ms_median=med, fps=1e3 / med, device=name, date=date, model=label))
            print(f"  variant {vname}: {med:.3f} ms", flush=True)
        for mode in ("depth", "normal", "samples", "level"):
            for tname, tuning in sweep.items():
                med = statistics.median(time_frames(marcher, field, cams[:10], lod, mode=mode, tuning=tuning))
                records.append(record(renderer=f"cuda[{mode}]", tuning=tname, width=w, height=h, lod=lod,
                                      grid=grid, bits=bits, ms_median=med, fps=1e3 / med, device=name, date=date,
                                      model=label))
                print(f"  mode {mode} [{tname}]: {med:.3f} ms", flush=True)
        if not args.no_interop:
            io = interop_overhead(marcher, field, cams[0], lod)
            records.append(record(renderer="cuda+interop", width=w, height=h, lod=lod, grid=grid, bits=bits,
                                  ms_median=io.get("frame_ms_interop"), interop_ms=io.get("interop_ms"),
                                  fps=1e3 / io["frame_ms_interop"] if "frame_ms_interop" in io else None,
                                  device=name, date=date, model=label, **{k: v for k, v in io.items()
                                                                        if k not in ("interop_ms",)}))
            print(f"  interop: {io}", flush=True)

    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"device": name, "commit": git_commit(), "ceilings": ceilings, "records": records}, indent=1))
    Path(args.md).write_text(markdown(name, ceilings, records))
    print(markdown(name, ceilings, records))
    return 0


def markdown(name: str, ceilings: dict, records: list[dict]) -> str:
    lines = [f"# Render speed on {name}", "",
             f"Measured ceilings: copy {ceilings['copy_bytes_per_s'] / 1e12:.2f} TB/s (read + write), FP32 SGEMM "
             f"{ceilings['fp32_flops_per_s'] / 1e12:.1f} TFLOP/s. Written by bench/render.py.", "",
             "| renderer | tuning | model | grid | bits | LOD | size | ms (median) | fps | M samples/frame "
             "| G samples/s | floor ms | PSNR vs torch (dB) | interop ms |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def f(v, fmt):
        return "" if v is None else (fmt.format(v) if not (isinstance(v, float) and math.isinf(v)) else "ref")

    for r in records:
        lines.append(" | ".join([
            "", r["renderer"], str(r.get("tuning", "")), str(r.get("model", "")), str(r["grid"]), str(r["bits"] or ""), str(r["lod"]),
            f"{r['width']}x{r['height']}", f(r["ms_median"], "{:.3f}"), f(r["fps"], "{:.0f}"),
            f(r.get("samples_per_frame") and r["samples_per_frame"] / 1e6, "{:.2f}"),
            f(r.get("samples_per_s") and r["samples_per_s"] / 1e9, "{:.2f}"), f(r.get("floor_ms"), "{:.3f}"),
            f(r["psnr_vs_reference"], "{:.1f}"), f(r["interop_ms"], "{:.4f}"), ""]).strip())
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
