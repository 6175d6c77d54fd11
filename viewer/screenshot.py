"""PNG files of the field: names that say what they show, the settings in PNG text chunks, never an overwrite.

`write_png` creates the file exclusively (open mode "xb"): when the name exists, even because another process
created it a moment ago, a counter is added instead. A failed write leaves no partial file behind.
"""
from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.errors import VbnfError

MAX_COUNTER = 100_000


def settings_stem(settings: dict) -> str:
    """A file-name stem from view settings: model, LOD, bits, mode, camera angles, size (and budget if any)."""
    parts = [Path(str(settings.get("model", "field"))).stem or "field", f"lod{settings.get('lod', 0)}"]
    if settings.get("bits") is not None:
        parts.append(f"b{settings['bits']}")
    parts.append(str(settings.get("mode", "rgb")))
    if "azimuth" in settings:
        parts.append(f"az{float(settings['azimuth']):.0f}_el{float(settings['elevation']):.0f}")
    if settings.get("byte_budget") is not None:
        parts.append(f"{int(settings['byte_budget'])}B")
    if "width" in settings:
        parts.append(f"{settings['width']}x{settings['height']}")
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", "_".join(parts))


def png_info(settings: dict) -> PngInfo:
    """One tEXt chunk per setting ("vbnf:<key>") plus all of them as JSON ("vbnf:settings")."""
    info = PngInfo()
    for key, value in settings.items():
        info.add_text(f"vbnf:{key}", json.dumps(value) if not isinstance(value, str) else value)
    info.add_text("vbnf:settings", json.dumps(settings, sort_keys=True))
    return info


def write_png(pixels: np.ndarray, folder: str | os.PathLike, settings: dict, stem: str | None = None) -> Path:
    """Writes uint8 [H,W,3] pixels to folder/<stem>.png, or <stem>_<n>.png when that exists; returns the path.

    Raises VbnfError (one line naming the folder) when the folder cannot be written.
    """
    folder = Path(folder)
    stem = stem or settings_stem(settings)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "RGB").save(buffer, "PNG", pnginfo=png_info(settings))
    data = buffer.getvalue()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VbnfError(f"cannot create the folder {folder}: {e.strerror or e}; choose another output folder") from None
    for n in range(MAX_COUNTER):
        path = folder / (f"{stem}.png" if n == 0 else f"{stem}_{n}.png")
        try:
            with open(path, "xb") as f:
                try:
                    f.write(data)
                except BaseException:
                    f.close()
                    path.unlink(missing_ok=True)
                    raise
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise VbnfError(f"cannot write {path}: {e.strerror or e}; choose another output folder") from None
    raise VbnfError(f"{folder}: {MAX_COUNTER} files named {stem}_N.png already exist; choose another output folder")


def free_path(path: str | os.PathLike) -> Path:
    """`path` if nothing exists there, else the first free path_<n> with the same suffix (for proposing names)."""
    path = Path(path)
    if not path.exists():
        return path
    for n in range(1, MAX_COUNTER):
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise VbnfError(f"{path.parent}: too many files named {path.stem}_N{path.suffix}; choose another name")
