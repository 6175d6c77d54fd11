"""Pinhole cameras with OpenCV radial-tangential distortion, and the rays through their pixels.

Layer: engine (pure torch; imports nothing from viewer/).

Conventions used by the whole repo:
- World and camera frames follow OpenGL/NeRF: camera x right, y up, the camera looks down -z.
  `c2w` maps camera coordinates to world coordinates (column 3 is the camera centre).
- Pixel coordinates are continuous, measured from the image's top-left corner, x to the right and
  y downwards; the centre of pixel column i / row j is (i + 0.5, j + 0.5).
- Distortion k1, k2, p1, p2 follows OpenCV and acts on normalised coordinates
  x = (px - cx) / fx, y = (py - cy) / fy (y downwards), exactly as instant-ngp and COLMAP do.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

UNDISTORT_ITERATIONS = 10  # Newton steps; converges to float64 precision for real lenses in 3-5


@dataclass
class Cameras:
    """N cameras sharing one set of intrinsics."""

    c2w: torch.Tensor
    """[N,4,4] float32 camera-to-world, OpenGL/NeRF convention (x right, y up, looks down -z)."""
    fx: float
    """Focal length along x, pixels."""
    fy: float
    """Focal length along y, pixels."""
    cx: float
    """Principal point x, pixels from the left edge (pixel centres at i + 0.5)."""
    cy: float
    """Principal point y, pixels from the top edge (pixel centres at j + 0.5)."""
    width: int
    """Image width, pixels."""
    height: int
    """Image height, pixels."""
    distortion: torch.Tensor
    """[4] float32 OpenCV k1, k2, p1, p2; all zeros when the lens has no distortion."""


def make_cameras(
    c2w: torch.Tensor,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    width: int,
    height: int,
    distortion: torch.Tensor | None = None,
) -> Cameras:
    """Cameras from c2w [N,4,4] (or [4,4], or [N,3,4]) and pinhole intrinsics in pixels; checks shapes."""
    c2w = torch.as_tensor(c2w, dtype=torch.float32)
    if c2w.dim() == 2:
        c2w = c2w[None]
    if c2w.dim() != 3 or c2w.shape[1] not in (3, 4) or c2w.shape[2] != 4:
        raise ValueError(f"c2w must be [N,4,4] or [N,3,4], got {list(c2w.shape)}")
    if c2w.shape[1] == 3:
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(c2w.shape[0], 1, 4)
        c2w = torch.cat([c2w, bottom], dim=1)
    if distortion is None:
        distortion = torch.zeros(4)
    distortion = torch.as_tensor(distortion, dtype=torch.float32).reshape(-1)
    if distortion.shape != (4,):
        raise ValueError(f"distortion must be [4] (k1,k2,p1,p2), got {list(distortion.shape)}")
    return Cameras(
        c2w=c2w.contiguous(),
        fx=float(fx),
        fy=float(fy),
        cx=float(cx),
        cy=float(cy),
        width=int(width),
        height=int(height),
        distortion=distortion,
    )


def resize_cameras(cams: Cameras, width: int, height: int) -> Cameras:
    """The same cameras seeing a resized image of width x height pixels: fx, cx scale by width/cams.width,
    fy, cy by height/cams.height (the image's full extent maps onto the new one, as PIL resize does)."""
    sx = width / cams.width
    sy = height / cams.height
    return replace(
        cams,
        fx=cams.fx * sx,
        fy=cams.fy * sy,
        cx=cams.cx * sx,
        cy=cams.cy * sy,
        width=int(width),
        height=int(height),
    )


def select_cameras(cams: Cameras, index: torch.Tensor | list[int]) -> Cameras:
    """A subset of the cameras, c2w[index]; index is a [K] long tensor or a list of ints."""
    index = torch.as_tensor(index, dtype=torch.long)
    return replace(cams, c2w=cams.c2w[index].contiguous())


def cameras_to(cams: Cameras, device: torch.device | str) -> Cameras:
    """The cameras with c2w and distortion on `device`."""
    return replace(cams, c2w=cams.c2w.to(device), distortion=cams.distortion.to(device))


def distort_normalized(x: torch.Tensor, y: torch.Tensor, distortion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV forward model: undistorted normalised coordinates x, y [R] -> distorted xd, yd [R].

    distortion is [4] = k1, k2, p1, p2. Coordinates are unitless (pixels / focal length), y downwards.
    """
    k1, k2, p1, p2 = (distortion[i].to(x.dtype) for i in range(4))
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + k2 * r2)
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return xd, yd


def undistort_normalized(
    xd: torch.Tensor, yd: torch.Tensor, distortion: torch.Tensor, iterations: int = UNDISTORT_ITERATIONS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of `distort_normalized` by Newton's method: distorted xd, yd [R] -> undistorted x, y [R].

    Runs in float64 and returns the input dtype. A fixed number of steps (no data-dependent loop), so it
    behaves the same on CPU and GPU. Accurate to ~1e-12 within the lens' usable field of view.
    """
    out_dtype = xd.dtype
    xd = xd.double()
    yd = yd.double()
    k1, k2, p1, p2 = (float(v) for v in distortion.detach().cpu().double())
    x, y = xd.clone(), yd.clone()
    for _ in range(iterations):
        r2 = x * x + y * y
        radial = 1.0 + r2 * (k1 + k2 * r2)
        d_radial = 2.0 * (k1 + 2.0 * k2 * r2)  # d radial / d(x or y), divided by x or y
        fx = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x) - xd
        fy = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y - yd
        fx_x = radial + x * x * d_radial + 2.0 * p1 * y + 6.0 * p2 * x
        fx_y = x * y * d_radial + 2.0 * p1 * x + 2.0 * p2 * y
        fy_x = x * y * d_radial + 2.0 * p1 * x + 2.0 * p2 * y
        fy_y = radial + y * y * d_radial + 6.0 * p1 * y + 2.0 * p2 * x
        det = fx_x * fy_y - fx_y * fy_x
        det = torch.where(det.abs() < 1e-12, torch.full_like(det, 1e-12), det)
        x = x - (fx * fy_y - fy * fx_y) / det
        y = y - (fy * fx_x - fx * fy_x) / det
    return x.to(out_dtype), y.to(out_dtype)


def normalized_coordinates(px: torch.Tensor, py: torch.Tensor, fx: float, fy: float, cx: float, cy: float,
                           distortion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel positions px, py [R] -> normalised image coordinates x, y [R] ((px - cx) / fx, (py - cy) / fy, y
    downwards), undistorted when `distortion` ([4] k1, k2, p1, p2, on the host) is non-zero: the camera-frame ray
    through a pixel is normalize([x, -y, -1]) for training (rays_from_pixels) and every renderer."""
    x = (px - cx) / fx
    y = (py - cy) / fy
    if bool((distortion != 0).any()):
        x, y = undistort_normalized(x, y, distortion)
    return x, y


def rays_from_pixels(
    cams: Cameras, cam_ids: torch.Tensor, px: torch.Tensor, py: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """World-space rays through continuous pixel positions.

    cam_ids: [R] long, index into cams.c2w. px, py: [R] float pixel coordinates (column i's centre is i + 0.5).
    Returns origins [R,3] (camera centres) and dirs [R,3] (unit length), float32, on c2w's device.
    Undistorts the pixel first when cams.distortion is non-zero. For an undistorted pixel the direction is
    R @ normalize([(px-cx)/fx, -(py-cy)/fy, -1]) with R = c2w[:3,:3].
    """
    if cam_ids.dim() != 1 or px.shape != cam_ids.shape or py.shape != cam_ids.shape:
        raise ValueError(
            f"cam_ids, px, py must all be [R]; got {list(cam_ids.shape)}, {list(px.shape)}, {list(py.shape)}"
        )
    device = cams.c2w.device
    cam_ids = cam_ids.to(device=device, dtype=torch.long)
    x, y = normalized_coordinates(px.to(device=device, dtype=torch.float32), py.to(device=device, dtype=torch.float32),
                                  cams.fx, cams.fy, cams.cx, cams.cy, cams.distortion)
    d_cam = torch.stack([x, -y, -torch.ones_like(x)], dim=-1)  # [R,3], OpenGL camera frame
    d_cam = d_cam / d_cam.norm(dim=-1, keepdim=True)
    c2w = cams.c2w[cam_ids]  # [R,4,4]
    dirs = torch.einsum("rij,rj->ri", c2w[:, :3, :3], d_cam)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = c2w[:, :3, 3].contiguous()
    return origins, dirs.contiguous()


def pixel_centers(width: int, height: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """px, py [H*W] float32: the centres of all pixels of a width x height image, row-major."""
    cols = torch.arange(width, device=device, dtype=torch.float32) + 0.5
    rows = torch.arange(height, device=device, dtype=torch.float32) + 0.5
    py, px = torch.meshgrid(rows, cols, indexing="ij")
    return px.reshape(-1), py.reshape(-1)


def image_rays(
    cams: Cameras, cam_index: int, width: int | None = None, height: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through all pixel centres of camera `cam_index`, row-major: origins [H*W,3], dirs [H*W,3] unit.

    width/height (pixels) render the same view at another resolution (intrinsics scaled accordingly);
    either defaults to the camera's own, so giving only one changes the aspect ratio.
    """
    w = cams.width if width is None else int(width)
    h = cams.height if height is None else int(height)
    px, py = pixel_centers(w, h, device=cams.c2w.device)
    px = px * (cams.width / w)  # back to the camera's own pixel units
    py = py * (cams.height / h)
    ids = torch.full_like(px, cam_index, dtype=torch.long)
    return rays_from_pixels(cams, ids, px, py)


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
    """[4,4] float32 camera-to-world of a camera at eye [3] looking at target [3], OpenGL convention.

    up [3] is the world's up direction (default +z, Blender's); when the view is parallel to it,
    world +y is used instead so the result is always a rotation.
    """
    eye = torch.as_tensor(eye, dtype=torch.float64)
    target = torch.as_tensor(target, dtype=torch.float64)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64) if up is None else torch.as_tensor(up, dtype=torch.float64)
    back = eye - target
    back = back / back.norm()
    right = torch.linalg.cross(up, back)
    if right.norm() < 1e-9:
        right = torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), back)
    right = right / right.norm()
    cam_up = torch.linalg.cross(back, right)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, 0] = right
    c2w[:3, 1] = cam_up
    c2w[:3, 2] = back
    c2w[:3, 3] = eye
    return c2w.float()


def orbit_position(
    center: torch.Tensor, radius: float, azimuth_deg: float, elevation_deg: float
) -> torch.Tensor:
    """[3] float64 point on a sphere around center [3]: azimuth from +x towards +y, elevation above the xy plane
    (+z up, Blender convention), radius in world units."""
    az = math.radians(azimuth_deg)
    el = math.radians(elevation_deg)
    offset = torch.tensor(
        [math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)], dtype=torch.float64
    )
    return torch.as_tensor(center, dtype=torch.float64) + radius * offset


def orbit_camera(
    center: torch.Tensor,
    radius: float,
    azimuth_deg: float,
    elevation_deg: float,
    fov_y_deg: float,
    width: int,
    height: int,
) -> Cameras:
    """One undistorted camera on a sphere of `radius` around center [3] looking at it, +z up world.

    fov_y_deg is the vertical field of view; pixels are square, the principal point is the image centre.
    """
    eye = orbit_position(center, radius, azimuth_deg, elevation_deg)
    c2w = look_at(eye, torch.as_tensor(center, dtype=torch.float64))
    focal = 0.5 * height / math.tan(0.5 * math.radians(fov_y_deg))
    return make_cameras(c2w[None], focal, focal, 0.5 * width, 0.5 * height, width, height)
