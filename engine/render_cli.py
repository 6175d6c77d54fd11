"""`vbnf render MODEL --out img.png`: one image without a window, through the renderer engine.render_policy picks
(the CUDA marcher when it can run, else torch), coloured by engine.colormap as the viewer and `vbnf compare` colour
it."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from engine.cameras import image_rays, orbit_camera
from engine.cli_checks import (MAX_FOV, MIN_FOV, colour, float_list, fov_degrees, image_size, int_in,
                               positive_int)
from engine.colormap import display_rgb, field_value_range, to_uint8
from engine.errors import VbnfError
from engine.evaluate import pick_device
from engine.render import RENDER_MODES, render_image, samples_per_ray_bound
from engine.render_policy import choose_renderer, cuda_failure


def to_display(image: torch.Tensor, mode: str, value_range: tuple[float, float],
               background: tuple[float, float, float]) -> np.ndarray:
    """A rendered image in any mode -> uint8 [H,W,3] for a PNG, in the viewer's colours (engine.colormap)."""
    values = image.detach().float().cpu().numpy()
    return to_uint8(display_rgb(values, mode, value_range, background))


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
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument("--renderer", default="auto", choices=["auto", "cuda", "torch"],
                        help="auto (default): the CUDA marcher when it can run, else the torch renderer")
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
    if choose_renderer(args.renderer, device).uses_cuda:
        from engine.gpu_render import render_camera_cuda
        try:
            image = render_camera_cuda(field, cams.c2w[0], cams.fx, cams.fy, cams.cx, cams.cy, width, height, lod,
                                       args.mode, tuple(bg))
        except Exception as e:  # a compile or launch failure: one line, not a traceback
            raise cuda_failure(e) from e
    else:
        origins, dirs = image_rays(cams, 0)
        image = render_image(field, origins.to(device), dirs.to(device), width, height, lod, args.mode, bg)
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    for key, value in {"vbnf:model": str(args.model), "vbnf:lod": lod, "vbnf:mode": args.mode,
                       "vbnf:camera": args.camera, "vbnf:fov": args.fov, "vbnf:bits": field.bits}.items():
        info.add_text(key, str(value))
    out.parent.mkdir(parents=True, exist_ok=True)
    value_range = field_value_range(field, args.mode, cams.c2w[0, :3, 3])
    Image.fromarray(to_display(image, args.mode, value_range, tuple(bg))).save(out, pnginfo=info)
    print(f"wrote {out} ({width}x{height}, LOD {lod}, {args.mode})")
    return 0
