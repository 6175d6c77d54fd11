"""Comparisons: what each side of the split view shows and how it is labelled, the labelled image that "Save
comparison" writes, and `vbnf compare` (a labelled contact sheet of LODs x bitwidths, no window, rendered by the
renderer engine.render_policy picks and coloured by engine.colormap).

A side is a field at some LOD and bitwidth (or a ground-truth training image); its label says the LOD, the bits,
the bytes of the file prefix that LOD needs at those bits, and the PSNR when known.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from engine.errors import VbnfError
from viewer.field_source import FieldSource, Versioned, lod_psnr, open_other
from viewer.state import AppState

LABEL_FONT_PX = 13


def format_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} kB"
    return f"{n / (1024 * 1024):.2f} MB"


@dataclass
class Side:
    """What one side of the view shows."""

    name: str
    """Model file name, or "ground truth #i"."""
    shown: Versioned | None = None
    """The field rendered (None for a ground-truth image)."""
    lod: int = 0
    """LOD rendered (already clamped to the field)."""
    bits: int | None = None
    """Codebook bitwidth of the field (None: dense)."""
    size_bytes: int | None = None
    """Bytes of the file prefix this LOD needs at these bits."""
    psnr: float | None = None
    """PSNR in dB when known (stored metrics, or measured against the ground truth)."""
    image: np.ndarray | None = None
    """A ground-truth image float [H,W,3] in [0,1] shown instead of a render."""

    def tile_lines(self) -> list[str]:
        """Two short lines for a contact-sheet tile: "LOD k, b bits" and "size, PSNR"."""
        first = f"LOD {self.lod}, " + (f"{self.bits} bits" if self.bits else "dense")
        second = format_bytes(self.size_bytes) + (f", {self.psnr:.2f} dB" if self.psnr is not None else "")
        return [first, second]

    def label(self) -> str:
        if self.image is not None:
            return self.name + (f" | PSNR of A {self.psnr:.2f} dB" if self.psnr is not None else "")
        parts = [self.name, f"LOD {self.lod}", f"{self.bits} bits" if self.bits else "dense",
                 format_bytes(self.size_bytes)]
        if self.psnr is not None:
            parts.append(f"{self.psnr:.2f} dB")
        return " | ".join(parts)


def side_of(source: FieldSource, shown: Versioned, lod: int, with_stored_psnr: bool) -> Side:
    """A side rendering `shown` (a field of `source`) at `lod`."""
    field = shown.field
    lod = max(0, min(lod, field.max_lod))
    ladder = source.layout_of(shown).lod_prefix_bytes
    psnr = lod_psnr(field.metadata).get(lod) if with_stored_psnr else None
    return Side(source.name, shown, lod, field.bits, ladder[lod] if lod < len(ladder) else None, psnr)


def main_side(state: AppState, source: FieldSource) -> Side:
    """Side A: the shown field at the state's LOD. Stored PSNRs apply only to the file's own field."""
    return side_of(source, source.shown(state.bits, state.byte_budget), state.lod, source.is_stored(state.bits))


def other_side(state: AppState, source: FieldSource, others: dict[str, FieldSource]) -> Side:
    """Side B for the kinds that render a field (lod, bits, model); VbnfError (one line) when it cannot be built."""
    c = state.compare
    if c.kind == "lod":
        shown = source.shown(state.bits, state.byte_budget)
        return side_of(source, shown, c.lod_b, source.is_stored(state.bits))
    if c.kind == "bits":
        if source.trained_bits is None:
            raise VbnfError(f"{source.name} is a dense grid: it has no codebook bitwidth to compare")
        shown = source.prepared(c.bits_b, state.byte_budget)
        if shown is None:
            raise VbnfError(f"converting {source.name} to {c.bits_b} bits for side B ...")
        return side_of(source, shown, state.lod, source.live is None and source.is_stored(c.bits_b))
    if c.kind == "model":
        if not c.model_b_path:
            raise VbnfError("comparison with another model: type its path in 'Model B' and press Enter")
        other = open_other(c.model_b_path, others)
        return side_of(other, other.full, state.lod, True)
    raise VbnfError(f"comparison kind {c.kind!r} does not render a field")


# ---------------------------------------------------------------------------------------------------------------
# Labelled images (PIL)


def _font(size: int = LABEL_FONT_PX) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def draw_label(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, anchor_right: bool = False) -> None:
    """Text on a dark box at xy (its top-left, or its top-right when anchor_right)."""
    font = _font()
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 8, bottom - top + 6
    x = xy[0] - w if anchor_right else xy[0]
    draw.rectangle((x, xy[1], x + w, xy[1] + h), fill=(20, 20, 20))
    draw.text((x + 4 - left, xy[1] + 3 - top), text, fill=(255, 255, 255), font=font)


def label_split(pixels: np.ndarray, label_a: str, label_b: str, divider: float) -> np.ndarray:
    """The saved comparison: the split image with side A's label at its top left and B's at its top right."""
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    draw_label(draw, (4, 4), "A: " + label_a)
    draw_label(draw, (image.width - 4, 4 + LABEL_FONT_PX + 10), "B: " + label_b, anchor_right=True)
    return np.asarray(image)


def contact_sheet(tiles: list[list[np.ndarray]], labels: list[list[list[str]]], title: str) -> np.ndarray:
    """Rows x columns of equal-size uint8 tiles [h,w,3], each with its label lines under it, and a title on top."""
    rows, cols = len(tiles), len(tiles[0])
    h, w = tiles[0][0].shape[:2]
    font = _font()
    line_h = LABEL_FONT_PX + 3
    n_lines = max(len(lines) for row in labels for lines in row)
    pad, label_h, title_h = 8, n_lines * line_h + 6, LABEL_FONT_PX + 14
    sheet = Image.new("RGB", (cols * (w + pad) + pad, title_h + rows * (h + label_h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 5), title, fill=(0, 0, 0), font=font)
    for r in range(rows):
        for c in range(cols):
            x, y = pad + c * (w + pad), title_h + r * (h + label_h + pad)
            sheet.paste(Image.fromarray(tiles[r][c], "RGB"), (x, y))
            for i, line in enumerate(labels[r][c]):
                draw.text((x, y + h + 3 + i * line_h), line, fill=(0, 0, 0), font=font)
    return np.asarray(sheet)


# ---------------------------------------------------------------------------------------------------------------
# vbnf compare


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise VbnfError(f"--{what} takes comma-separated integers like 2,4,6, got {text!r}") from None
    if not values:
        raise VbnfError(f"--{what} is empty; give comma-separated integers like 2,4,6")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=".vbnf model file")
    parser.add_argument("--lod", default="", help="comma-separated LODs (default: every LOD)")
    parser.add_argument("--bits", default="", help="comma-separated codebook bitwidths (default: the stored one)")
    parser.add_argument("--camera", default="45,25", help="azimuth,elevation[,distance] in degrees / world units "
                        "(default 45,25 and the viewer's default distance)")
    parser.add_argument("--fov", type=float, default=40.0, help="vertical field of view, degrees")
    parser.add_argument("--size", type=int, default=400, help="tile size in pixels (square)")
    parser.add_argument("--mode", default="rgb", help="rgb, depth, normal, samples or level")
    parser.add_argument("--renderer", default="auto", choices=["auto", "cuda", "torch"],
                        help="auto (default): the CUDA marcher when it can run, else the torch renderer")
    parser.add_argument("--out", default="compare.png", help="PNG to write (never overwritten: a counter is added)")


def run(args) -> int:
    from engine.modes import MAX_BITS, MIN_BITS, RENDER_MODES
    from engine.render import samples_per_ray_bound
    from engine.render_policy import choose_renderer, cuda_failure
    from viewer.camera import default_camera
    from engine.colormap import display_rgb, to_uint8
    from viewer.render_paths import RenderJob, render_values
    from viewer.screenshot import write_png

    if args.mode not in RENDER_MODES:
        raise VbnfError(f"--mode {args.mode!r} is not one of {', '.join(RENDER_MODES)}")
    if not 8 <= args.size <= 4096:
        raise VbnfError(f"--size {args.size} must be between 8 and 4096 pixels")
    source = FieldSource.open(args.model)
    full = source.full.field
    lods = _int_list(args.lod, "lod") if args.lod else list(range(full.max_lod + 1))
    bad = [k for k in lods if not 0 <= k <= full.max_lod]
    if bad:
        raise VbnfError(f"--lod {bad[0]} is outside this model's 0..{full.max_lod}")
    bits_list = _int_list(args.bits, "bits") if args.bits else [source.trained_bits]
    if source.trained_bits is None and args.bits:
        raise VbnfError(f"{source.name} is a dense grid: --bits does not apply")
    if any(b is not None and not MIN_BITS <= b <= MAX_BITS for b in bits_list):
        raise VbnfError(f"--bits values must be between {MIN_BITS} and {MAX_BITS}")
    try:
        cam_values = [float(v) for v in args.camera.split(",")] if args.camera else []
    except ValueError:
        cam_values = []
    if len(cam_values) not in (2, 3) or not all(math.isfinite(v) for v in cam_values) or \
            (len(cam_values) == 3 and not 0 < cam_values[2] <= 1e6):
        raise VbnfError(f"--camera takes azimuth,elevation[,distance > 0], got {args.camera!r}")
    if not 1.0 <= args.fov <= 170.0:
        raise VbnfError(f"--fov {args.fov:g} must be between 1 and 170 degrees")
    camera = default_camera(full.scene_center, full.scene_half_size, args.fov)
    camera.azimuth_deg, camera.elevation_deg = cam_values[0], cam_values[1]
    if len(cam_values) == 3:
        camera.distance = cam_values[2]
    background = (1.0, 1.0, 1.0)
    samples_per_ray_bound(full)  # a model no renderer should march: refused before the renderer is chosen
    use_cuda = choose_renderer(args.renderer).uses_cuda
    tiles, labels = [], []
    for bits in bits_list:
        shown = source.converted(bits, None)
        row_tiles, row_labels = [], []
        for lod in lods:
            side = side_of(source, shown, lod, bits in (None, source.trained_bits))
            job = RenderJob("shot", shown.field, shown.version, camera.cameras(args.size, args.size), camera.key(),
                            args.size, args.size, lod, args.mode, background)
            if use_cuda:
                from engine.gpu_render import march_rays
                try:
                    values = march_rays(job.field, job.cameras, lod, args.mode, background).float().cpu().numpy()
                except Exception as e:  # a compile or launch failure: one line, not a traceback
                    raise cuda_failure(e) from e
            else:
                values = render_values(job)
            rgb = display_rgb(values, args.mode, job.value_range, background)
            row_tiles.append(to_uint8(rgb))
            row_labels.append(side.tile_lines())
        tiles.append(row_tiles)
        labels.append(row_labels)
    title = (f"{source.name}  {args.mode}  az {camera.azimuth_deg:g} el {camera.elevation_deg:g} "
             f"dist {camera.distance:.2f}")
    sheet = contact_sheet(tiles, labels, title)
    settings = {"model": source.name, "lods": lods, "bits": bits_list, "mode": args.mode,
                "azimuth": camera.azimuth_deg, "elevation": camera.elevation_deg, "distance": camera.distance,
                "fov": args.fov, "size": args.size}
    out = Path(args.out)
    path = write_png(sheet, out.parent if str(out.parent) else ".", settings, stem=out.stem)
    print(f"wrote {path}" + ("" if path == out else f" ({out} exists; not overwritten)"))
    return 0
