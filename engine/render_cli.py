"""`vbnf render MODEL --out img.png`: one image without a window (CUDA marcher when available, else torch)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from engine.cameras import image_rays, orbit_camera
from engine.cli_checks import (MAX_FOV, MIN_FOV, colour, float_list, fov_degrees, image_size, int_in,
                               positive_int)
from engine.errors import VbnfError
from engine.evaluate import pick_device
from engine.render import RENDER_MODES, render_image, samples_per_ray_bound


def to_display(image: torch.Tensor, mode: str) -> np.ndarray:
    """A rendered image in any mode -> uint8 [H,W,3] for a PNG (depth: near bright; samples/level: heat map)."""
    img = image.detach().float().cpu()
    if mode == "rgb":
        rgb = img.clamp(0, 1)
    elif mode == "normal":
        rgb = (img * 0.5 + 0.5).clamp(0, 1)
    else:
        v = img.clone()
        if mode == "depth":
            hit = v > 0
            lo, hi = (v[hit].min(), v[hit].max()) if hit.any() else (0.0, 1.0)
            v = torch.where(hit, 1.0 - (v - lo) / max(float(hi - lo), 1e-6) * 0.8, torch.zeros_like(v))
            rgb = v[..., None].expand(*v.shape, 3)
        else:
            v = (v - v.min()) / max(float(v.max() - v.min()), 1e-6)
            rgb = heat(v)
    return (rgb.numpy() * 255 + 0.5).astype(np.uint8)


def heat(v: torch.Tensor) -> torch.Tensor:
    """[H,W] in [0,1] -> [H,W,3] blue-green-yellow-red."""
    r = (1.5 - (4 * v - 3).abs()).clamp(0, 1)
    g = (1.5 - (4 * v - 2).abs()).clamp(0, 1)
    b = (1.5 - (4 * v - 1).abs()).clamp(0, 1)
    return torch.stack([r, g, b], -1)


def add_arguments(parser) -> None:
    parser.add_argument("model", help="a .vbnf model file")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--camera", default="30,25,4.0",
                        help="azimuth,elevation (degrees),distance (world units) around the scene centre")
    parser.add_argument("--fov", type=fov_degrees, default=40.0,
                        help=f"vertical field of view, degrees ({MIN_FOV:g}..{MAX_FOV:g})")
    parser.add_argument("--size", type=image_size, default=(800, 800), help="WIDTHxHEIGHT (default 800x800)")
    parser.add_argument("--lod", type=int_in(-1, None, "an LOD (or -1: the finest)"), default=-1,
                        help="level of detail (default: the finest held)")
    parser.add_argument("--max-bytes", type=positive_int, default=None,
                        help="load only this many bytes of the file (more than the file: the whole file)")
    parser.add_argument("--mode", default="rgb", choices=RENDER_MODES)
    parser.add_argument("--background", type=colour, default=(1.0, 1.0, 1.0), help="r,g,b in [0,1]")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def orbit_values(text: str) -> tuple[float, float, float]:
    """--camera 'azimuth,elevation,distance' -> floats (distance > 0); VbnfError in one line otherwise."""
    try:
        az, el, dist = float_list(text, (3,), "azimuth,elevation,distance")
    except argparse.ArgumentTypeError as e:
        raise VbnfError(f"--camera: {e}") from None
    if not 0.0 < dist <= 1e6:
        raise VbnfError(f"--camera distance {dist:g} must be in (0, 1e6] world units")
    return az, el, dist


def checked_lod(lod: int, max_lod: int, what: str = "--lod") -> int:
    """A requested LOD (-1: the finest) -> the LOD to render; VbnfError naming the valid range when out of it."""
    if lod < 0:
        return max_lod
    if lod > max_lod:
        raise VbnfError(f"{what} {lod} does not exist: this model holds LOD 0..{max_lod}")
    return lod


def bytes_to_read(path: str, max_bytes: int | None) -> int | None:
    """--max-bytes bounded by the file: more than the file means the whole file (None)."""
    if max_bytes is None:
        return None
    try:
        size = os.path.getsize(path)
    except OSError:
        return max_bytes  # the loader names the problem
    return None if max_bytes >= size else max_bytes


def run(args) -> int:
    from engine.fileformat import load_model
    out = Path(args.out)
    if out.exists() and not args.force:
        raise VbnfError(f"{out} exists; choose another --out or pass --force")
    width, height = args.size
    az, el, dist = orbit_values(args.camera)
    bg = args.background
    device = pick_device(args.device)
    field = load_model(args.model, max_bytes=bytes_to_read(args.model, args.max_bytes)).to(device)
    lod = checked_lod(args.lod, field.max_lod)
    samples_per_ray_bound(field)  # a model no renderer should march (RenderError), refused the same on every path
    cams = orbit_camera(field.scene_center.cpu(), dist, az, el, args.fov, width, height)
    image = None
    if device.type == "cuda":
        try:
            from engine.gpu_render import render_camera_cuda
            image = render_camera_cuda(field, cams.c2w[0], cams.fx, cams.fy, cams.cx, cams.cy, width, height, lod,
                                       args.mode, tuple(bg))
        except Exception as e:  # noqa: BLE001 - fall back to the reference renderer, said once
            print(f"vbnf render: CUDA marcher unavailable ({e}); using the torch renderer")
    if image is None:
        origins, dirs = image_rays(cams, 0)
        image = render_image(field, origins.to(device), dirs.to(device), width, height, lod, args.mode, bg)
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    for key, value in {"vbnf:model": str(args.model), "vbnf:lod": lod, "vbnf:mode": args.mode,
                       "vbnf:camera": args.camera, "vbnf:fov": args.fov, "vbnf:bits": field.bits}.items():
        info.add_text(key, str(value))
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_display(image, args.mode)).save(out, pnginfo=info)
    print(f"wrote {out} ({width}x{height}, LOD {lod}, {args.mode})")
    return 0
