"""`vbnf render MODEL --out img.png`: one image without a window, through the renderer engine.render_policy picks
(the CUDA marcher when it can run, else torch), coloured by engine.colormap as the viewer and `vbnf compare` colour
it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engine.cameras import image_rays, orbit_camera
from engine.colormap import display_rgb, field_value_range, to_uint8
from engine.errors import VbnfError
from engine.evaluate import pick_device
from engine.render import RENDER_MODES, render_image
from engine.render_policy import choose_renderer, cuda_failure


def parse_floats(text: str, n: int, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != n:
        raise VbnfError(f"{what} '{text}': expected {n} comma-separated numbers")
    return values


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
    parser.add_argument("--fov", type=float, default=40.0, help="vertical field of view, degrees")
    parser.add_argument("--size", default="800x800", help="WIDTHxHEIGHT")
    parser.add_argument("--lod", type=int, default=-1, help="level of detail (default: the finest held)")
    parser.add_argument("--max-bytes", type=int, default=None, help="load only this many bytes of the file")
    parser.add_argument("--mode", default="rgb", choices=RENDER_MODES)
    parser.add_argument("--background", default="1,1,1", help="r,g,b in [0,1]")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument("--renderer", default="auto", choices=["auto", "cuda", "torch"],
                        help="auto (default): the CUDA marcher when it can run, else the torch renderer")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def run(args) -> int:
    from engine.fileformat import load_model
    out = Path(args.out)
    if out.exists() and not args.force:
        raise VbnfError(f"{out} exists; choose another --out or pass --force")
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise VbnfError(f"--size '{args.size}': expected WIDTHxHEIGHT, e.g. 800x800") from None
    az, el, dist = parse_floats(args.camera, 3, "--camera")
    bg = parse_floats(args.background, 3, "--background")
    device = pick_device(args.device)
    field = load_model(args.model, max_bytes=args.max_bytes).to(device)
    lod = field.max_lod if args.lod < 0 else min(args.lod, field.max_lod)
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
