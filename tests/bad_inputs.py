"""Generators of the bad inputs of issue 13 that concern the renderer, the command line, writes and --resume
(F2 render side, F3, F5, F8, F9, F10). Each returns a file or a value; the tests say what must happen with it."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from engine.field import InferenceField, NeuralField
from engine.fileformat import save_model
from engine.octree import octree_from_cells
from fields import sphere_shell_octree


def shell_field(max_level: int = 4, base_level: int = 1, kind: str = "vq", bits: int | None = 3,
                feature_dim: int = 4, seed: int = 0) -> InferenceField:
    """An untrained field on a sphere-shell octree (every level occupied)."""
    octree = sphere_shell_octree(max_level)
    nf = NeuralField(octree, base_level, kind, feature_dim=feature_dim, bits=None if kind == "dense" else bits,
                     seed=seed)
    return nf.freeze({"metrics": {"psnr": 20.0}})


def f2_inflated_lods(path: Path, n_lods: int = 19) -> Path:
    """F2: a small model whose stated LOD count (n_lods) says the finest level is base + n_lods - 1 (here 20),
    while it holds 4 LODs: a prefix of an absurdly deep model. The ray step follows n_lods."""
    field = shell_field(4, 1)
    field.n_lods = n_lods
    save_model(path, field)
    return path


def chain_field(depth: int, base_level: int = 1) -> InferenceField:
    """F2: one occupied cell per level down to `depth` (a deep single-cell chain), every LOD held."""
    code, cells = 0, [torch.zeros(1, dtype=torch.int64)]
    for _ in range(depth):
        code = code * 8 + 7
        cells.append(torch.tensor([code], dtype=torch.int64))
    nf = NeuralField(octree_from_cells(cells), base_level, "vq", feature_dim=4, bits=2)
    return nf.freeze()


def f2_chain_model(path: Path, depth: int = 18) -> Path:
    save_model(path, chain_field(depth))
    return path


def f5_empty_level_field() -> InferenceField:
    """F5: a field whose octree levels below 2 are empty (level 2's cells have no children)."""
    cells = [torch.zeros(1, dtype=torch.int64), torch.tensor([0, 7], dtype=torch.int64),
             torch.tensor([0, 63], dtype=torch.int64), torch.zeros(0, dtype=torch.int64),
             torch.zeros(0, dtype=torch.int64)]
    nf = NeuralField(octree_from_cells(cells), 1, "vq", feature_dim=4, bits=2)
    return nf.freeze()


def scene_variant(src: Path, dst: Path, edit) -> Path:
    """A copy of the Blender data set `src` (JSON files rewritten, images linked) whose transforms_train.json is
    edited by `edit(meta)`, in place."""
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        target = dst / item.name
        if item.suffix == ".json":
            meta = json.loads(item.read_text())
            if item.name == "transforms_train.json":
                edit(meta)
            target.write_text(json.dumps(meta))
        elif not target.exists():
            target.symlink_to(item.resolve())
    return dst


def ngp_variant(src: Path, dst: Path, edit) -> Path:
    """An instant-ngp transforms.json beside the train images of the Blender set `src`, edited by `edit(meta)`."""
    dst.mkdir(parents=True, exist_ok=True)
    blender = json.loads((src / "transforms_train.json").read_text())
    if not (dst / "train").exists():
        (dst / "train").symlink_to((src / "train").resolve())
    from PIL import Image
    first = blender["frames"][0]["file_path"]
    first = first if first.endswith(".png") else first + ".png"
    w, h = Image.open(src / first).size
    meta = {"camera_angle_x": blender["camera_angle_x"], "w": w, "h": h,
            "frames": [{"file_path": f["file_path"] + ("" if f["file_path"].endswith(".png") else ".png"),
                        "transform_matrix": f["transform_matrix"]} for f in blender["frames"]]}
    edit(meta)
    (dst / "transforms.json").write_text(json.dumps(meta))
    return dst


def set_pose(index: int, matrix) -> callable:
    def edit(meta):
        meta["frames"][index]["transform_matrix"] = matrix
    return edit


def set_key(key: str, value) -> callable:
    def edit(meta):
        meta[key] = value
    return edit


def bad_checkpoint(good: dict, key: str, value) -> dict:
    """F10: a checkpoint dict with one field replaced by a value of the wrong type."""
    out = dict(good)
    out[key] = value
    return out
