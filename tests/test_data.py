"""Data loaders (engine/data.py) and rays (engine/cameras.py): round trip through our own generated scene,
the shared real data sets when present, and one-line DataErrors for every kind of broken input."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.cameras import distort_normalized, image_rays, make_cameras, orbit_camera, rays_from_pixels
from engine.data import load_dataset
from engine.errors import DataError
from engine.scenes import CAMERA_ANGLE_X, intersect_scene, make_scene

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
LEGO = SHARED_DATA / "nerf_synthetic_400" / "lego"
FOX = SHARED_DATA / "instant_ngp_fox"
RES = 32


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated Blender data set: 6 train, 2 val, 3 test views at 32x32."""
    return make_scene(tmp_path_factory.mktemp("toys"), n_train=6, n_test=3, n_val=2, resolution=RES, seed=3)


@pytest.fixture
def scene_copy(scene: Path, tmp_path: Path) -> Path:
    """A private copy of the generated scene that a test may break."""
    return Path(shutil.copytree(scene, tmp_path / "toys"))


def _ray_distance_to_origin(origins: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """[R] closest distance between each ray (o + t d, t >= 0, d unit) and the world origin."""
    t = (-origins * dirs).sum(-1).clamp_min(0.0)
    return (origins + t[:, None] * dirs).norm(dim=-1)


def _ngp_from_blender(blender: Path, extra: dict | None = None) -> Path:
    """Rewrite a generated Blender set in place as an instant-ngp transforms.json over its train images."""
    meta = json.loads((blender / "transforms_train.json").read_text())
    focal = 0.5 * RES / math.tan(0.5 * meta["camera_angle_x"])
    frames = [{"file_path": f["file_path"] + ".png", "transform_matrix": f["transform_matrix"]} for f in meta["frames"]]
    ngp = {"fl_x": focal, "fl_y": focal, "cx": RES / 2, "cy": RES / 2, "w": RES, "h": RES, "aabb_scale": 2, "frames": frames}
    ngp.update(extra or {})
    for s in ("train", "val", "test"):
        (blender / f"transforms_{s}.json").unlink()
    (blender / "transforms.json").write_text(json.dumps(ngp))
    return blender


# --- round trip through the scene generator -------------------------------------------------------


def test_round_trip_shapes_alpha_and_white_background(scene: Path) -> None:
    ds = load_dataset(scene)
    assert ds.split == "train"
    assert ds.images.shape == (6, RES, RES, 3) and ds.images.dtype == torch.float32
    assert ds.alphas is not None and ds.alphas.shape == (6, RES, RES)
    assert ds.cameras.c2w.shape == (6, 4, 4)
    assert (ds.cameras.width, ds.cameras.height) == (RES, RES)
    assert ds.cameras.fx == pytest.approx(0.5 * RES / math.tan(0.5 * CAMERA_ANGLE_X))
    assert ds.cameras.cx == pytest.approx(RES / 2)
    assert torch.all(ds.cameras.distortion == 0)
    assert ds.background == (1.0, 1.0, 1.0)
    assert ds.scene_half_size == 1.5 and torch.all(ds.scene_center == 0)
    assert [p.name for p in ds.image_paths] == [f"r_{i}.png" for i in range(6)]
    empty = ds.alphas == 0
    assert empty.any() and (ds.alphas == 1).any()
    assert torch.all(ds.images[empty] == 1.0)
    # composited exactly: rgb * a + (1 - a)
    raw = torch.from_numpy(np.array(Image.open(ds.image_paths[2]))).float() / 255.0
    expect = raw[..., :3] * raw[..., 3:] + (1.0 - raw[..., 3:])
    torch.testing.assert_close(ds.images[2], expect)
    assert load_dataset(scene, "test").images.shape[0] == 3
    assert load_dataset(scene, "val").images.shape[0] == 2


def test_json_path_downscale_and_max_images(scene: Path) -> None:
    ds = load_dataset(scene / "transforms_test.json", split="train", downscale=2, max_images=2)
    assert ds.split == "test"  # a Blender JSON given directly decides the split
    assert ds.images.shape == (2, RES // 2, RES // 2, 3)
    assert [p.name for p in ds.image_paths] == ["r_0.png", "r_2.png"]  # evenly spaced, first and last
    full = load_dataset(scene, "test")
    assert ds.cameras.fx == pytest.approx(full.cameras.fx / 2)
    assert ds.cameras.cx == pytest.approx(full.cameras.cx / 2)
    torch.testing.assert_close(ds.cameras.c2w, full.cameras.c2w[[0, 2]])
    # box filter of the composited image == composited box filter, up to 8-bit rounding
    coarse = full.images[0].reshape(RES // 2, 2, RES // 2, 2, 3).mean((1, 3))
    assert (ds.images[0] - coarse).abs().max() < 0.03


def test_loaded_rays_agree_with_rendered_alpha(scene: Path) -> None:
    """The loader's cameras and rays_from_pixels reproduce the generator's geometry: pixel centres whose
    ray hits the scene are opaque, the others transparent (edge pixels may differ)."""
    ds = load_dataset(scene)
    for i in range(3):
        o, d = image_rays(ds.cameras, i)
        t, _ = intersect_scene(o, d)
        hit = torch.isfinite(t).reshape(RES, RES)
        alpha = ds.alphas[i]
        agree = ((alpha == 1) & hit) | ((alpha == 0) & ~hit) | ((alpha > 0) & (alpha < 1))
        assert agree.float().mean() > 0.99
        assert (hit & (alpha == 1)).sum() > 0.1 * RES * RES


def test_instant_ngp_format_from_generated_scene(scene_copy: Path) -> None:
    root = _ngp_from_blender(scene_copy)
    ds = load_dataset(root)
    assert ds.images.shape == (6, RES, RES, 3) and ds.alphas is not None
    assert ds.scene_half_size == pytest.approx(0.5 * 2 / 0.33)
    torch.testing.assert_close(ds.scene_center, torch.zeros(3))
    blender = load_dataset(root / "transforms.json")  # JSON path directly
    torch.testing.assert_close(blender.images, ds.images)
    test = load_dataset(root, "test")
    assert [p.name for p in test.image_paths] == ["r_0.png"]  # every 8th frame
    assert load_dataset(root, "val").image_paths == test.image_paths


# --- rays -----------------------------------------------------------------------------------------


def test_principal_point_ray_is_minus_z() -> None:
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g))
    c2w = torch.eye(4)
    c2w[:3, :3] = q
    c2w[:3, 3] = torch.tensor([1.0, -2.0, 0.5])
    cams = make_cameras(c2w, 100.0, 120.0, 33.3, 20.7, 64, 48)
    o, d = rays_from_pixels(cams, torch.zeros(1, dtype=torch.long), torch.tensor([33.3]), torch.tensor([20.7]))
    torch.testing.assert_close(d[0], -c2w[:3, 2], atol=1e-6, rtol=0)
    torch.testing.assert_close(o[0], c2w[:3, 3])
    # +x pixel -> camera +x (right); +y pixel (down) -> camera -y
    _, d2 = rays_from_pixels(cams, torch.zeros(2, dtype=torch.long), torch.tensor([60.0, 33.3]), torch.tensor([20.7, 40.0]))
    assert (d2[0] @ c2w[:3, 0]) > 0 and (d2[1] @ c2w[:3, 1]) < 0


def test_image_rays_of_scene_cameras_hit_the_origin(scene: Path) -> None:
    ds = load_dataset(scene)
    for i in range(ds.cameras.c2w.shape[0]):
        o, d = image_rays(ds.cameras, i)
        assert o.shape == d.shape == (RES * RES, 3)
        torch.testing.assert_close(d.norm(dim=-1), torch.ones(RES * RES))
        dist = _ray_distance_to_origin(o, d).reshape(RES, RES)
        centre = dist[RES // 2 - 1 : RES // 2 + 1, RES // 2 - 1 : RES // 2 + 1]
        assert centre.max() < 0.1  # the four central pixels pass next to the origin
        assert dist.max() < 2.0  # and the whole view stays around the scene
    o2, d2 = image_rays(ds.cameras, 0, width=2 * RES, height=2 * RES)
    assert d2.shape == (4 * RES * RES, 3)
    # pixel (1,1) at 2x covers the same spot as the centre of pixel (0,0)'s lower-right quarter
    _, d_ref = rays_from_pixels(ds.cameras, torch.zeros(1, dtype=torch.long), torch.tensor([0.75]), torch.tensor([0.75]))
    torch.testing.assert_close(d2[2 * RES + 1], d_ref[0], atol=1e-6, rtol=0)


def test_orbit_camera_looks_at_center() -> None:
    center = torch.tensor([0.2, -0.1, 0.3])
    cams = orbit_camera(center, 4.0, 30.0, 20.0, 40.0, 80, 60)
    assert cams.c2w.shape == (1, 4, 4) and (cams.width, cams.height) == (80, 60)
    assert (cams.c2w[0, :3, 3] - center).norm() == pytest.approx(4.0, rel=1e-5)
    assert cams.c2w[0, 2, 3] > center[2]  # positive elevation is above, +z up
    o, d = rays_from_pixels(cams, torch.zeros(1, dtype=torch.long), torch.tensor([40.0]), torch.tensor([30.0]))
    assert _ray_distance_to_origin(o - center, d)[0] < 1e-5
    assert cams.fy == pytest.approx(30.0 / math.tan(math.radians(20.0)))
    assert cams.c2w[0, 2, 1] > 0  # camera up has a positive world z component
    top = orbit_camera(center, 2.0, 0.0, 90.0, 40.0, 8, 8)  # degenerate look-at still gives a rotation
    r = top.c2w[0, :3, :3]
    torch.testing.assert_close(r.T @ r, torch.eye(3), atol=1e-6, rtol=0)


def test_undistortion_recovers_direction() -> None:
    """Distort known normalised points with the forward OpenCV model (written out here), then check
    rays_from_pixels undoes it: direction error < 1e-5."""
    k1, k2, p1, p2 = 0.0578421, -0.0805099, -0.000980296, 0.00015575  # the fox lens
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(500, generator=g, dtype=torch.float64) - 0.5) * 0.9
    y = (torch.rand(500, generator=g, dtype=torch.float64) - 0.5) * 1.5
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    dist = torch.tensor([k1, k2, p1, p2])
    xd2, yd2 = distort_normalized(x, y, dist)
    torch.testing.assert_close(xd2, xd, atol=1e-7, rtol=0)
    torch.testing.assert_close(yd2, yd, atol=1e-7, rtol=0)
    fx, fy, cx, cy = 1375.52, 1374.49, 554.558, 965.268
    c2w = torch.eye(4)
    c2w[:3, :3] = torch.linalg.qr(torch.randn(3, 3, generator=g))[0]
    cams = make_cameras(c2w, fx, fy, cx, cy, 1080, 1920, dist)
    px, py = (fx * xd + cx).float(), (fy * yd + cy).float()
    _, d = rays_from_pixels(cams, torch.zeros(500, dtype=torch.long), px, py)
    ref = torch.stack([x, -y, -torch.ones_like(x)], 1)
    ref = (ref / ref.norm(dim=1, keepdim=True)).float() @ c2w[:3, :3].T
    assert (d - ref).norm(dim=1).max() < 1e-5
    _, d_plain = rays_from_pixels(make_cameras(c2w, fx, fy, cx, cy, 1080, 1920), torch.zeros(500, dtype=torch.long), px, py)
    assert (d_plain - ref).norm(dim=1).max() > 1e-3  # distortion matters for these points


# --- shared real data sets ------------------------------------------------------------------------


def test_lego_blender() -> None:
    if not (LEGO / "transforms_train.json").is_file():
        pytest.skip(f"{LEGO} not present")
    train = load_dataset(LEGO)
    assert train.images.shape == (100, 400, 400, 3)
    assert train.alphas is not None and train.alphas.shape == (100, 400, 400)
    angle = json.loads((LEGO / "transforms_train.json").read_text())["camera_angle_x"]
    assert train.cameras.fx == pytest.approx(0.5 * 400 / math.tan(0.5 * angle))
    assert torch.all(train.images[train.alphas == 0] == 1.0)
    o, d = image_rays(train.cameras, 0)
    assert _ray_distance_to_origin(o, d).min() < 0.05  # lego cameras look at the origin
    test = load_dataset(LEGO, "test", downscale=4)
    assert test.images.shape == (200, 100, 100, 3)
    assert test.cameras.fx == pytest.approx(train.cameras.fx / 4)


def test_instant_ngp_fox() -> None:
    if not (FOX / "transforms.json").is_file():
        pytest.skip(f"{FOX} not present")
    ds = load_dataset(FOX, downscale=8, max_images=3)
    assert ds.images.shape == (3, 240, 135, 3)
    assert ds.alphas is None
    assert (ds.cameras.width, ds.cameras.height) == (135, 240)
    assert ds.cameras.fx == pytest.approx(1375.52 / 8)
    assert ds.cameras.cy == pytest.approx(965.268 / 8)
    torch.testing.assert_close(ds.cameras.distortion, torch.tensor([0.0578421, -0.0805099, -0.000980296, 0.00015575]))
    assert ds.scene_half_size == pytest.approx(0.5 * 4 / 0.33)
    assert ds.image_paths[0].name == "0001.jpg" and ds.image_paths[0].is_file()
    for i in range(3):  # every camera looks into the scene cube
        o, d = image_rays(ds.cameras, i)
        assert _ray_distance_to_origin(o, d).min() < ds.scene_half_size
    n_frames = len(json.loads((FOX / "transforms.json").read_text())["frames"])
    assert n_frames == 67
    test = load_dataset(FOX, "test", downscale=16)
    assert len(test.image_paths) == math.ceil(67 / 8)


# --- broken inputs: one-line DataError naming the file --------------------------------------------


def _raises(path: Path | str, name: str, split: str = "train") -> str:
    """Load, expect a DataError whose single-line message names `name`; return the message."""
    with pytest.raises(DataError) as info:
        load_dataset(path, split)
    msg = str(info.value)
    assert "\n" not in msg and name in msg, msg
    return msg


def test_missing_folder(tmp_path: Path) -> None:
    _raises(tmp_path / "no_such_scene", "no_such_scene")


def test_missing_transforms(tmp_path: Path, scene_copy: Path) -> None:
    (tmp_path / "empty").mkdir()
    _raises(tmp_path / "empty", "empty")
    (scene_copy / "transforms_val.json").unlink()
    msg = _raises(scene_copy, "transforms_val.json", "val")
    assert "train" in msg  # lists the splits that do exist


def test_malformed_json(scene_copy: Path) -> None:
    (scene_copy / "transforms_train.json").write_text('{\n  "camera_angle_x": 0.69\n  "frames": []\n}\n')
    msg = _raises(scene_copy, "transforms_train.json")
    assert "line 3" in msg


def test_missing_keys(scene_copy: Path) -> None:
    path = scene_copy / "transforms_train.json"
    meta = json.loads(path.read_text())
    del meta["camera_angle_x"]
    path.write_text(json.dumps(meta))
    assert "camera_angle_x" in _raises(scene_copy, "transforms_train.json")
    meta = json.loads((scene_copy / "transforms_test.json").read_text())
    del meta["frames"][1]["transform_matrix"]
    path.write_text(json.dumps(meta))
    assert "transform_matrix" in _raises(scene_copy, "transforms_train.json")


def test_missing_image(scene_copy: Path) -> None:
    (scene_copy / "train" / "r_1.png").unlink()
    _raises(scene_copy, "r_1.png")


def test_wrong_size_image(scene_copy: Path) -> None:
    p = scene_copy / "train" / "r_4.png"
    Image.open(p).resize((RES + 2, RES)).save(p)
    _raises(scene_copy, "r_4.png")


def test_wrong_size_for_ngp_intrinsics(scene_copy: Path) -> None:
    _ngp_from_blender(scene_copy, {"w": RES * 2, "h": RES * 2})
    _raises(scene_copy, "r_0.png")


def test_empty_frames(scene_copy: Path) -> None:
    (scene_copy / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": []}))
    _raises(scene_copy, "transforms_train.json")


def test_undecodable_image(scene_copy: Path) -> None:
    (scene_copy / "train" / "r_0.png").write_bytes(b"not a png")
    _raises(scene_copy, "r_0.png")
