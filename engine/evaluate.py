"""`vbnf eval MODEL DATA`: PSNR and SSIM of a model on a data set's split, per LOD, as a table and JSON.

Rendering goes through the renderer engine.render_policy.choose_renderer picks: the fused CUDA marcher when it can
run (it matches the torch reference to >= 45 dB, see tests/test_march_rays.py), else the torch reference; the table
says which one ran.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import torch

from engine.cameras import Cameras, image_rays
from engine.cli_checks import int_in, positive_int
from engine.data import Dataset, load_dataset
from engine.errors import VbnfError
from engine.field import InferenceField
from engine.metrics import psnr, ssim
from engine.render import render_image, samples_per_ray_bound
from engine.render_policy import choose_renderer, cuda_failure

ViewRenderer = Callable[[int, int], torch.Tensor]  # (camera index, lod) -> float [H,W,3]


def pick_device(name: str = "auto") -> torch.device:
    """"auto" -> cuda when torch sees a GPU, else cpu; "cuda" without a GPU is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VbnfError(f"--device {name}: torch sees no CUDA GPU here; use --device cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise VbnfError(f"--device {name!r}: choose auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise VbnfError(f"--device {name}: there are {torch.cuda.device_count()} CUDA devices")
    return device


def view_renderer(field: InferenceField, cams: Cameras, background, device: torch.device,
                  prefer: str = "auto") -> tuple[ViewRenderer, str]:
    """A function rendering camera i of `cams` at a LOD, and the name of the renderer behind it ("cuda" or "torch"),
    as engine.render_policy.choose_renderer decides."""
    samples_per_ray_bound(field)  # a model no renderer should march (RenderError), refused the same on every path
    field = field.to(device)
    bg = tuple(float(v) for v in background)
    choice = choose_renderer(prefer, device)
    if choice.uses_cuda:
        from engine.gpu_render import render_camera_cuda  # lazily: the marcher compiles on first use

        def render_cuda(i: int, lod: int) -> torch.Tensor:
            c = cams.c2w[i]
            try:
                return render_camera_cuda(field, c, cams.fx, cams.fy, cams.cx, cams.cy, cams.width, cams.height,
                                          lod, "rgb", bg, cams.distortion)
            except Exception as e:  # a compile or launch failure: one line, not a traceback
                raise cuda_failure(e) from e
        return render_cuda, choice.renderer

    def render_torch(i: int, lod: int) -> torch.Tensor:
        origins, dirs = image_rays(cams, i)
        return render_image(field, origins.to(device), dirs.to(device), cams.width, cams.height, lod, "rgb", bg)
    return render_torch, choice.renderer


def evaluate(field: InferenceField, dataset: Dataset, lods: list[int] | None = None, device: str = "auto",
             renderer: str = "auto", progress: bool = False) -> list[dict]:
    """Mean PSNR (dB) and SSIM over the data set's images for each LOD -> one dict per LOD:
    {lod, psnr, ssim, images, renderer, seconds}."""
    dev = pick_device(device)
    lods = list(range(field.max_lod + 1)) if lods is None else lods
    bad = [k for k in lods if not 0 <= k <= field.max_lod]
    if bad:
        raise VbnfError(f"LOD {bad[0]} does not exist: this model holds LOD 0..{field.max_lod}")
    render, name = view_renderer(field, dataset.cameras, dataset.background, dev, renderer)
    rows = []
    for lod in lods:
        t0 = time.perf_counter()
        p, s = [], []
        iterator = range(dataset.images.shape[0])
        if progress:
            from tqdm import tqdm
            iterator = tqdm(iterator, desc=f"eval LOD {lod}", leave=False)
        for i in iterator:
            image = render(i, lod).float().clamp(0, 1)
            ref = dataset.images[i].to(image.device)
            p.append(psnr(image, ref))
            s.append(ssim(image, ref))
        rows.append({"lod": lod, "psnr": sum(p) / len(p), "ssim": sum(s) / len(s), "images": len(p),
                     "renderer": name, "seconds": round(time.perf_counter() - t0, 2)})
    return rows


def format_table(rows: list[dict], ladder: list[int] | None = None) -> str:
    lines = ["| LOD | PSNR (dB) | SSIM | prefix bytes | images | renderer |", "|---|---|---|---|---|---|"]
    for r in rows:
        size = f"{ladder[r['lod']]:,}" if ladder and r["lod"] < len(ladder) else "-"
        lines.append(f"| {r['lod']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {size} | {r['images']} | {r['renderer']} |")
    return "\n".join(lines)


def parse_lods(text: str) -> list[int]:
    """--lods '0,2,3' -> [0, 2, 3] (checked against the model's LODs by `evaluate`); VbnfError in one line."""
    try:
        lods = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        lods = []
    if not lods:
        raise VbnfError(f"--lods takes 'all' or comma-separated LODs like 0,2,4, got {text!r}")
    return lods


def add_arguments(parser) -> None:
    parser.add_argument("model", help="a .vbnf model file")
    parser.add_argument("data", help="data set folder (Blender or instant-ngp format) or its transforms JSON")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--lods", default="all", help="comma-separated LODs, or 'all' (default)")
    parser.add_argument("--max-images", type=positive_int, default=None, help="evaluate only the first N images")
    parser.add_argument("--downscale", type=int_in(1, 64, "an integer factor"), default=1,
                        help="shrink images by this integer factor")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument("--renderer", default="auto", choices=["auto", "cuda", "torch"])
    parser.add_argument("--json", dest="json_path", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--store", action="store_true",
                        help="store the metrics in the model file's metadata (atomic rewrite) for the viewer")


def run(args) -> int:
    from engine.fileformat import load_model, save_model
    if args.json_path and not Path(args.json_path).resolve().parent.is_dir():
        raise VbnfError(f"--json {args.json_path}: its folder does not exist; create it or choose another path")
    field = load_model(args.model)
    dataset = load_dataset(args.data, args.split, downscale=args.downscale, max_images=args.max_images)
    lods = None if args.lods == "all" else parse_lods(args.lods)
    rows = evaluate(field, dataset, lods, args.device, args.renderer, progress=True)
    try:
        from engine.fileformat import model_layout
        ladder = list(model_layout(args.model).lod_prefix_bytes)
    except Exception:  # noqa: BLE001 - the ladder column is optional
        ladder = None
    print(f"{args.model} on {dataset.root} ({args.split}, {dataset.images.shape[0]} images)")
    print(format_table(rows, ladder))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(rows, indent=2))
    if args.store:
        if ladder is not None and len(field.levels) < len(ladder):
            raise VbnfError(f"{args.model} is a partial file ({len(field.levels)} of {len(ladder)} LODs present); "
                            "--store would rewrite it with only those LODs: complete the file first")
        metrics = dict(field.metadata.get("metrics", {}))
        metrics[f"{args.split}_per_lod"] = [{"lod": r["lod"], "psnr": round(r["psnr"], 3),
                                             "ssim": round(r["ssim"], 4)} for r in rows]
        save_model(args.model, field, {"metrics": metrics})
        print(f"stored the metrics in {args.model}")
    return 0
