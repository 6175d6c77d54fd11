"""Turntable (orbit) camera: pure math, no GL, no window.

World +z is up (Blender convention, as engine/cameras.py). The camera sits on a sphere of radius `distance` around
`target`, at `azimuth_deg` (from +x towards +y) and `elevation_deg` (above the xy plane), looking at the target,
with no roll. Mouse deltas are in window pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from engine.cameras import Cameras, look_at, make_cameras, orbit_position

ORBIT_DEG_PER_PIXEL = 0.4
ZOOM_PER_WHEEL_STEP = 0.9
MAX_ELEVATION_DEG = 89.0
DEFAULT_AZIMUTH_DEG = 45.0
DEFAULT_ELEVATION_DEG = 25.0
DEFAULT_FOV_Y_DEG = 40.0
DISTANCE_PER_HALF_SIZE = 2.7  # default distance / scene half size: the scene cube fills ~70% of a 40 degree view


@dataclass
class OrbitCamera:
    """Where the viewer looks from; the only camera state the app keeps."""

    target: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Point orbited around and looked at, world units."""
    distance: float = 4.0
    """Distance from the target to the eye, world units (> 0)."""
    azimuth_deg: float = DEFAULT_AZIMUTH_DEG
    """Angle of the eye around +z, from +x towards +y, degrees."""
    elevation_deg: float = DEFAULT_ELEVATION_DEG
    """Angle of the eye above the xy plane, degrees, within +-MAX_ELEVATION_DEG."""
    fov_y_deg: float = DEFAULT_FOV_Y_DEG
    """Vertical field of view, degrees."""

    def key(self) -> tuple[float, ...]:
        """Hashable value that changes whenever the view changes (rounded so float noise does not re-render)."""
        return tuple(round(v, 5) for v in (*self.target, self.distance, self.azimuth_deg, self.elevation_deg,
                                           self.fov_y_deg))

    # -- interaction (mutating; each keeps the camera valid) -------------------------------------------------------

    def orbit(self, dx_px: float, dy_px: float) -> None:
        """Left drag: dragging right turns the scene right (eye moves left), dragging down tilts it towards the
        viewer (eye moves up)."""
        self.azimuth_deg = (self.azimuth_deg - dx_px * ORBIT_DEG_PER_PIXEL) % 360.0
        self.elevation_deg = max(-MAX_ELEVATION_DEG,
                                 min(MAX_ELEVATION_DEG, self.elevation_deg + dy_px * ORBIT_DEG_PER_PIXEL))

    def pan(self, dx_px: float, dy_px: float, viewport_height_px: int) -> None:
        """Right/middle drag: the point under the cursor at the target's depth follows the cursor."""
        world_per_px = 2.0 * self.distance * math.tan(math.radians(self.fov_y_deg) / 2) / max(viewport_height_px, 1)
        c2w = self.c2w()
        right, up = c2w[:3, 0].tolist(), c2w[:3, 1].tolist()
        self.target = tuple(t - (r * dx_px - u * dy_px) * world_per_px for t, r, u in zip(self.target, right, up))

    def zoom(self, wheel_steps: float) -> None:
        """Wheel: each step up brings the eye ZOOM_PER_WHEEL_STEP closer."""
        self.distance = float(min(1e4, max(1e-3, self.distance * ZOOM_PER_WHEEL_STEP ** wheel_steps)))

    # -- derived ---------------------------------------------------------------------------------------------------

    def eye(self) -> torch.Tensor:
        """[3] float64 eye position, world units."""
        return orbit_position(torch.tensor(self.target, dtype=torch.float64), self.distance, self.azimuth_deg,
                              self.elevation_deg)

    def c2w(self) -> torch.Tensor:
        """[4,4] float32 camera-to-world, OpenGL convention (looks down -z, +y up on screen)."""
        return look_at(self.eye(), torch.tensor(self.target, dtype=torch.float64))

    def cameras(self, width: int, height: int) -> Cameras:
        """The engine's Cameras (one camera) for a width x height image, square pixels, centred principal point."""
        focal = 0.5 * height / math.tan(math.radians(self.fov_y_deg) / 2)
        return make_cameras(self.c2w()[None], focal, focal, 0.5 * width, 0.5 * height, width, height)


def default_camera(scene_center: torch.Tensor | tuple[float, float, float], scene_half_size: float,
                   fov_y_deg: float = DEFAULT_FOV_Y_DEG) -> OrbitCamera:
    """The reset view (key R) for a scene cube: looking at its centre from DISTANCE_PER_HALF_SIZE half sizes."""
    center = tuple(float(v) for v in torch.as_tensor(scene_center).reshape(3).tolist())
    return OrbitCamera(center, DISTANCE_PER_HALF_SIZE * float(scene_half_size), DEFAULT_AZIMUTH_DEG,
                       DEFAULT_ELEVATION_DEG, fov_y_deg)


def camera_from_c2w(c2w: torch.Tensor, target: tuple[float, float, float], fov_y_deg: float) -> OrbitCamera:
    """The orbit camera whose eye is c2w's centre, orbiting `target` (snap to a training camera; drops any roll)."""
    eye = c2w[:3, 3].double()
    offset = eye - torch.tensor(target, dtype=torch.float64)
    distance = float(offset.norm().clamp_min(1e-6))
    elevation = math.degrees(math.asin(max(-1.0, min(1.0, float(offset[2]) / distance))))
    azimuth = math.degrees(math.atan2(float(offset[1]), float(offset[0]))) % 360.0
    return OrbitCamera(tuple(target), distance, azimuth, max(-MAX_ELEVATION_DEG, min(MAX_ELEVATION_DEG, elevation)),
                       fov_y_deg)


def nearest_camera(cams: Cameras, eye: torch.Tensor, view_dir: torch.Tensor) -> int:
    """Index of the camera of `cams` closest to a view: eye distance plus a penalty for a different direction.

    eye [3] world units; view_dir [3] unit, the direction the view looks along.
    """
    if cams.c2w.shape[0] == 0:
        raise ValueError("no cameras to choose from")
    centers = cams.c2w[:, :3, 3].double()
    dirs = -cams.c2w[:, :3, 2].double()
    dist = (centers - eye.double()).norm(dim=1)
    scale = float(dist.max().clamp_min(1e-6))
    angle = 1.0 - (dirs @ view_dir.double())
    return int(torch.argmin(dist / scale + angle))
