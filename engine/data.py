"""Data set loaders: Blender/NeRF-Synthetic and instant-ngp `transforms.json`, with one-line errors.

Layer: engine (imports engine.cameras and engine.errors only).

Every failure a user can cause (missing folder or file, malformed JSON, missing key, missing or
wrong-size image, empty frame list) raises `DataError` whose message is one line naming the file
and what to do. Nothing else escapes `load_dataset` for bad input.

Formats (detected from which JSON exists; a JSON file's path may also be given directly):
- Blender / NeRF-Synthetic: `transforms_{train,val,test}.json` with `camera_angle_x` and
  `frames[].file_path` (no extension, `.png` is appended) + `transform_matrix`; RGBA PNGs composited
  on white; scene cube centre 0, half size 1.5. Giving `.../transforms_test.json` directly loads that
  file and the split is taken from its name (the `split` argument is ignored).
- instant-ngp: one `transforms.json` (any other JSON name given directly is read as this format) with
  `fl_x`/`fl_y` (or `camera_angle_x`/`camera_angle_y`), optional `cx`, `cy` (default: image centre),
  `w`, `h` (default: the first image's size), `k1 k2 p1 p2`, `aabb_scale` (default 1), optional
  `scale` (default 0.33) and `offset` (default 0.5,0.5,0.5); `frames[].file_path` includes the
  extension and is relative to the JSON's folder. It has no splits: "train" gives every frame,
  "val" and "test" give every 8th frame (frames 0, 8, 16, ... in file order; they are also in "train").
  The scene cube is instant-ngp's: centre (0.5 - offset) / scale, half size 0.5 * aabb_scale / scale.
  Images may be JPEG or PNG, RGB or RGBA (RGBA is composited on white).
"""
from __future__ import annotations

import json
import math
import operator
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from engine.cameras import Cameras, make_cameras, resize_cameras
from engine.errors import DataError, shown

WHITE: tuple[float, float, float] = (1.0, 1.0, 1.0)
BLENDER_HALF_SIZE = 1.5
NGP_DEFAULT_SCALE = 0.33
NGP_TEST_EVERY = 8
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".exr", ".bmp", ".tif", ".tiff", ".webp")
_BLENDER_NAME = re.compile(r"^transforms_(\w+)\.json$")

DatasetFormat = Literal["blender", "instant-ngp"]


@dataclass
class Dataset:
    """Posed images of one split of a data set, ready for training or evaluation."""

    root: Path
    """Folder the image paths are relative to (holds the transforms JSON)."""
    split: str
    """"train", "val" or "test"."""
    images: torch.Tensor
    """[N,H,W,3] float32 in [0,1], composited on `background` where the image has alpha."""
    alphas: torch.Tensor | None
    """[N,H,W] float32 in [0,1]; None when the images have no alpha channel."""
    cameras: Cameras
    """N cameras; intrinsics already scaled to the loaded (downscaled) resolution."""
    scene_center: torch.Tensor
    """[3] float32 world units: centre of the cube that bounds the scene."""
    scene_half_size: float
    """Half the cube's edge, world units."""
    background: tuple[float, float, float]
    """RGB in [0,1] the images were composited on."""
    image_paths: list[Path]
    """N image files, in the order of `images`."""


def load_dataset(
    path: str | Path, split: str = "train", downscale: int = 1, max_images: int | None = None
) -> Dataset:
    """Load one split of a Blender or instant-ngp data set (see the module docstring for both formats).

    path: the data set folder, or its transforms JSON. downscale: integer factor the images are shrunk by
    (PIL box filter; intrinsics scaled to match). max_images: keep at most this many frames, evenly spaced
    over the split (first and last included), for quick runs. Raises DataError with a one-line message.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    try:
        factor = operator.index(downscale)
    except TypeError:
        factor = 0
    if factor < 1:
        raise DataError(f"downscale must be a positive integer, got {downscale!r}")
    downscale = factor
    if max_images is not None and max_images < 1:
        raise DataError(f"max_images must be at least 1, got {max_images!r}")
    try:
        json_path, fmt, split = find_transforms(Path(path), split)
    except PermissionError as e:
        raise DataError(f"{e.filename or path}: permission denied; make the data set folder readable") from None
    except OSError as e:
        raise DataError(f"{e.filename or path}: cannot read ({_one_line(e.strerror or e)}); check the data set "
                        "folder") from None
    meta = read_json(json_path)
    frames = _frames(meta, json_path)
    if fmt == "instant-ngp" and split != "train":
        frames = frames[::NGP_TEST_EVERY]
    if max_images is not None and len(frames) > max_images:
        keep = np.unique(np.round(np.linspace(0, len(frames) - 1, max_images)).astype(int))
        frames = [frames[i] for i in keep]
    root = json_path.parent
    image_paths = [_image_path(root, f, i, json_path, fmt) for i, f in frames]
    c2w = torch.stack([_transform(f, i, json_path) for i, f in frames])
    rgba, (width, height), has_alpha = load_images(image_paths, json_path, downscale)
    if fmt == "blender":
        cams, center, half = _blender_cameras(meta, json_path, c2w, width, height)
    else:
        cams, center, half = _ngp_cameras(meta, json_path, c2w, width, height, image_paths[0])
    if downscale > 1:
        cams = resize_cameras(cams, rgba.shape[2], rgba.shape[1])
    images, alphas = composite_on(rgba, WHITE, has_alpha)
    return Dataset(
        root=root,
        split=split,
        images=images,
        alphas=alphas,
        cameras=cams,
        scene_center=center,
        scene_half_size=half,
        background=WHITE,
        image_paths=image_paths,
    )


def find_transforms(path: Path, split: str) -> tuple[Path, DatasetFormat, str]:
    """(transforms JSON to read, its format, the split it holds) for a data set folder or JSON path."""
    if not path.exists():
        raise DataError(
            f"{path}: no such file or folder; pass a data set folder holding transforms_train.json "
            f"(Blender) or transforms.json (instant-ngp)"
        )
    if path.is_file():
        match = _BLENDER_NAME.match(path.name)
        if match:
            return path, "blender", match.group(1)
        return path, "instant-ngp", split
    blender = path / f"transforms_{split}.json"
    if blender.is_file():
        return blender, "blender", split
    present = [s for s in SPLITS if (path / f"transforms_{s}.json").is_file()]
    if present:
        raise DataError(
            f"{blender}: not found; this Blender data set has split(s) {', '.join(present)}; "
            f"choose one of those or restore the file"
        )
    ngp = path / "transforms.json"
    if ngp.is_file():
        return ngp, "instant-ngp", split
    raise DataError(
        f"{path}: no transforms_{split}.json (Blender) or transforms.json (instant-ngp) in this folder; "
        f"point at the data set folder or export its camera poses"
    )


def read_json(json_path: Path) -> dict[str, Any]:
    """The JSON object in json_path; DataError for unreadable, malformed or non-object content."""
    try:
        text = json_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{json_path}: cannot read ({_one_line(e)}); check the file's permissions and encoding") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{json_path}: malformed JSON at line {e.lineno}: {e.msg}; fix or re-export the file"
        ) from None
    except (ValueError, RecursionError) as e:  # an integer of more than 4,300 digits; nesting deeper than the stack
        why = "nests too deeply" if isinstance(e, RecursionError) else "holds a number too long to read"
        raise DataError(f"{json_path}: the JSON {why}; fix or re-export the file") from None
    if not isinstance(meta, dict):
        raise DataError(f"{json_path}: expected a JSON object with 'frames', got {type(meta).__name__}; re-export the file")
    return meta


def load_images(paths: list[Path], json_path: Path, downscale: int = 1) -> tuple[np.ndarray, tuple[int, int], bool]:
    """Read all images in parallel threads, each shrunk by `downscale` right after decoding.

    Returns (rgba [N,H,W,4] uint8 straight alpha, alpha 255 where a file has none; the files' own size
    (width, height) in pixels before downscaling; whether any file has an alpha channel).
    All files must have the first one's size; DataError names the first offending file otherwise.
    """
    for i, p in enumerate(paths):
        if not p.is_file():
            raise DataError(
                f"{p}: image not found (frame {i} of {json_path.name}); restore it or remove its frame from {json_path}"
            )
    with ThreadPoolExecutor(max_workers=8) as pool:
        read = list(pool.map(lambda p: _read_rgba(p, downscale), paths))
    size = read[0][1]
    for p, (_, s, _) in zip(paths, read):
        if s != size:
            raise DataError(
                f"{p}: image is {s[0]}x{s[1]} but {paths[0].name} is {size[0]}x{size[1]}; "
                f"all images of a set must have one size, resize it or re-export the set"
            )
    return np.stack([a for a, _, _ in read]), size, any(has for _, _, has in read)


def composite_on(
    rgba: np.ndarray, background: tuple[float, float, float], has_alpha: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[N,H,W,4] uint8 straight-alpha RGBA -> (rgb [N,H,W,3] float32 in [0,1] over background, alpha [N,H,W]).

    alpha is None (and the alpha channel is ignored) when has_alpha is False.
    """
    t = torch.from_numpy(rgba)
    if not has_alpha:
        return t[..., :3].float().div_(255.0), None
    rgb = t[..., :3].float().div_(255.0)
    alpha = t[..., 3].float().div_(255.0)
    bg = torch.tensor(background, dtype=torch.float32)
    rgb = rgb * alpha[..., None] + bg * (1.0 - alpha[..., None])
    return rgb, alpha


def _read_rgba(p: Path, downscale: int) -> tuple[np.ndarray, tuple[int, int], bool]:
    """One image file -> (rgba [H',W',4] uint8 shrunk by downscale with PIL's box filter, which weights
    colours by alpha; its size (width, height) on disk; whether it has an alpha channel).
    DataError when PIL cannot decode it."""
    try:
        with Image.open(p) as im:
            size = im.size
            has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
            im = im.convert("RGBA")
            if downscale > 1:
                new = (max(1, size[0] // downscale), max(1, size[1] // downscale))
                im = im.resize(new, Image.Resampling.BOX)
            return np.asarray(im, dtype=np.uint8), size, has_alpha
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{p}: cannot decode image ({_one_line(e)}); re-export it as PNG or JPEG") from None


def _frames(meta: dict[str, Any], json_path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(index in file, frame) pairs of meta['frames']; DataError when absent, empty or not objects."""
    if "frames" not in meta:
        raise DataError(f"{json_path}: missing key 'frames'; the file must list posed frames, re-export it")
    frames = meta["frames"]
    if not isinstance(frames, list):
        raise DataError(f"{json_path}: 'frames' must be a list, got {type(frames).__name__}; re-export the file")
    if not frames:
        raise DataError(f"{json_path}: 'frames' is empty; export at least one posed frame")
    for i, f in enumerate(frames):
        if not isinstance(f, dict):
            raise DataError(f"{json_path}: frame {i} is not an object; re-export the file")
        for key in ("file_path", "transform_matrix"):
            if key not in f:
                raise DataError(f"{json_path}: frame {i} has no '{key}'; fix the frame or re-export the file")
        if not isinstance(f["file_path"], str):
            raise DataError(f"{json_path}: frame {i} 'file_path' is not a string; fix the frame or re-export the file")
    return list(enumerate(frames))


def _image_path(root: Path, frame: dict[str, Any], i: int, json_path: Path, fmt: DatasetFormat) -> Path:
    """The image file of a frame: Blender file_paths get '.png' appended unless they already name a file."""
    p = root / frame["file_path"]
    if fmt == "blender" and not p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES:
        return p.with_name(p.name + ".png")
    return p


def _transform(frame: dict[str, Any], i: int, json_path: Path) -> torch.Tensor:
    """[4,4] float32 c2w of a frame (a 3x4 matrix gets the row 0 0 0 1); DataError when not numeric 3x4/4x4."""
    try:
        m = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError, OverflowError, KeyError):  # not numbers, ragged, an int beyond float, missing
        m = np.zeros(0)
    if m.shape not in ((4, 4), (3, 4)) or not np.isfinite(m).all():
        raise DataError(
            f"{json_path}: frame {i} 'transform_matrix' must be a 4x4 list of finite numbers; fix or re-export the file"
        )
    if m.shape == (3, 4):
        m = np.concatenate([m, [[0.0, 0.0, 0.0, 1.0]]])
    bad = pose_problem(m)
    if bad:
        raise DataError(f"{json_path}: frame {i} 'transform_matrix' {bad}; fix or re-export the file")
    return torch.from_numpy(m).float()


MAX_POSE_TRANSLATION = 1e6  # world units; beyond it float32 ray origins lose the scene


def pose_problem(m: np.ndarray) -> str:
    """'' when a 4x4 camera-to-world matrix is a usable camera pose, else what is wrong: a rotation part that is
    singular or not orthogonal up to scale, or a position too far away (float32 rays would lose the scene)."""
    rot, pos = m[:3, :3], m[:3, 3]
    sv = np.linalg.svd(rot, compute_uv=False)
    if not sv[0] > 0 or sv[-1] < 1e-3 * sv[0] or sv[0] > 1e3 or sv[-1] < 1e-3:
        return f"has a degenerate rotation (singular values {', '.join(f'{v:.3g}' for v in sv)})"
    if np.abs(pos).max() > MAX_POSE_TRANSLATION:
        return f"puts the camera {np.abs(pos).max():.3g} units away (more than {MAX_POSE_TRANSLATION:g})"
    return ""


def _number(meta: dict[str, Any], key: str, json_path: Path, default: float | None = None) -> float:
    """meta[key] as a finite float; default when absent (DataError when absent without default)."""
    if key not in meta:
        if default is None:
            raise DataError(f"{json_path}: missing key '{key}'; add it or re-export the file")
        return default
    try:
        v = float(meta[key])
    except (TypeError, ValueError, OverflowError):
        v = math.nan
    if not math.isfinite(v):
        raise DataError(f"{json_path}: '{key}' must be a finite number, got {shown(meta[key])}; fix the file")
    return v


def _angle(meta: dict[str, Any], key: str, json_path: Path) -> float:
    """A field-of-view angle in radians, in (0, pi); DataError otherwise."""
    angle = _number(meta, key, json_path)
    if not 1e-4 < angle < math.pi - 1e-4:
        raise DataError(f"{json_path}: '{key}' must be in (0, pi) radians, got {angle}; fix the file")
    return angle


def _blender_cameras(
    meta: dict[str, Any], json_path: Path, c2w: torch.Tensor, width: int, height: int
) -> tuple[Cameras, torch.Tensor, float]:
    """Cameras of a Blender split (focal = 0.5 * W / tan(0.5 * camera_angle_x), centred principal point),
    scene cube centre [3] and half size."""
    angle = _angle(meta, "camera_angle_x", json_path)
    focal = 0.5 * width / math.tan(0.5 * angle)
    cams = make_cameras(c2w, focal, focal, 0.5 * width, 0.5 * height, width, height)
    return cams, torch.zeros(3), BLENDER_HALF_SIZE


def _ngp_cameras(
    meta: dict[str, Any], json_path: Path, c2w: torch.Tensor, width: int, height: int, first_image: Path
) -> tuple[Cameras, torch.Tensor, float]:
    """Cameras of an instant-ngp transforms.json and its scene cube (centre [3], half size), world units.

    The images must have the size given by w/h when those keys exist.
    """
    w = _number(meta, "w", json_path, float(width))
    h = _number(meta, "h", json_path, float(height))
    if (round(w), round(h)) != (width, height):
        raise DataError(
            f"{first_image}: image is {width}x{height} but {json_path.name} says w={w:g} h={h:g}; "
            f"fix w/h in the file or re-export the images"
        )
    if "fl_x" in meta:
        fx = _number(meta, "fl_x", json_path)
    elif "camera_angle_x" in meta:
        fx = 0.5 * width / math.tan(0.5 * _angle(meta, "camera_angle_x", json_path))
    else:
        raise DataError(f"{json_path}: missing key 'fl_x' (or 'camera_angle_x'); add the focal length in pixels")
    if "fl_y" in meta:
        fy = _number(meta, "fl_y", json_path)
    elif "camera_angle_y" in meta:
        fy = 0.5 * height / math.tan(0.5 * _angle(meta, "camera_angle_y", json_path))
    else:
        fy = fx
    cx = _number(meta, "cx", json_path, 0.5 * width)
    cy = _number(meta, "cy", json_path, 0.5 * height)
    for key, focal, side in (("fl_x", fx, width), ("fl_y", fy, height)):
        if not 1e-3 * side <= focal <= 1e4 * side:
            raise DataError(f"{json_path}: focal length {key} = {focal:g} pixels is degenerate for a {side}-pixel "
                            f"side (expected {1e-3 * side:g}..{1e4 * side:g}); fix the file")
    if not (0.0 <= cx <= width and 0.0 <= cy <= height):
        raise DataError(f"{json_path}: principal point cx={cx:g} cy={cy:g} lies outside the {width}x{height} image; "
                        "fix the file")
    dist = torch.tensor([_number(meta, k, json_path, 0.0) for k in ("k1", "k2", "p1", "p2")], dtype=torch.float32)
    cams = make_cameras(c2w, fx, fy, cx, cy, width, height, dist)
    aabb_scale = _number(meta, "aabb_scale", json_path, 1.0)
    scale = _number(meta, "scale", json_path, NGP_DEFAULT_SCALE)
    offset = meta.get("offset", [0.5, 0.5, 0.5])
    try:
        values = [float(v) for v in offset]
    except (TypeError, ValueError, OverflowError):
        values = []
    if len(values) != 3 or not all(math.isfinite(v) and abs(v) <= MAX_POSE_TRANSLATION for v in values):
        raise DataError(f"{json_path}: 'offset' must be a list of 3 finite numbers, got {shown(offset)}; fix the file")
    offset_t = torch.tensor(values, dtype=torch.float32)
    if aabb_scale <= 0 or scale <= 0:
        raise DataError(f"{json_path}: 'aabb_scale' and 'scale' must be positive; fix the file")
    center = (0.5 - offset_t) / scale
    return cams, center, 0.5 * aabb_scale / scale


def _one_line(e: BaseException) -> str:
    """str(e) squeezed onto one line."""
    return " ".join(str(e).split())


def resolve_dataset(value, model_path: Path) -> str:
    """A model's metadata["dataset"] as an absolute path: as stored when absolute, else relative to the current
    folder if it exists there, else relative to the model's folder; "" when unknown."""
    text = str(value or "").strip()
    if not text:
        return ""
    p = Path(text).expanduser()
    if p.is_absolute():
        return str(p)
    for base in (Path.cwd(), model_path.resolve().parent):
        if (base / p).exists():
            return str((base / p).resolve())
    return str(p.resolve())

