"""Procedural toy objects for the small Zero123 trained here (toy/train_prior.py).

    mesh = make_object(seed)                       one object, defined by its integer seed
    cams = object_cameras(seed, n, resolution)     its training views (orbit cameras)
    images, masks = render_views(mesh, cams)       renders on white with the project's mesh renderer
    T = zero123_T(cond_c2w, target_c2w)            Zero123's relative camera, from its training code

Objects are one, two or three primitives (box, sphere, cylinder, cone, torus, capsule) with random
proportions, orientations and placements, normalised like recon mode (bounding box centred on the
origin, largest side ``EXTENT``). Colours make the unseen side follow from the seen one through
3D: halves split left/right (seen from the front and mirrored from the back), stripes along the
height that run all the way round, a front/back split whose back colour is the front colour's
complement, a patch on one side; a fixed light is baked into the vertex colours (view-independent
shading, a shape cue). Seeds in ``TRAIN_SEEDS`` train the prior; every seed from
``HELDOUT_START`` on is an object it never saw (``data/toy/`` ships a few).
"""
from __future__ import annotations

import colorsys
import math

import numpy as np
import torch

from cameras import Camera
from mesh import Mesh

EXTENT = 1.0  # largest side of every object's bounding box (as recon mode's recon_extent)
RADIUS = 2.0  # camera distance of every view (image mode's `radius`)
FOVY = 49.1  # vertical field of view (image mode's `fovy`)
TRAIN_SEEDS = range(0, 100_000)  # objects the prior may train on
HELDOUT_START = 100_000  # objects from this seed on are never used in training
ELEVATION_RANGE = (-30.0, 30.0)  # training views: image mode's elevations (input 0, novel views +-30)
LIGHT = np.array([0.35, 0.8, 0.5]) / np.linalg.norm([0.35, 0.8, 0.5])  # baked light direction (+y up)
SHADE_AMBIENT = 0.55  # vertex colour = albedo * (ambient + (1 - ambient) * max(0, n . light))
PRIMITIVES = ("box", "sphere", "cylinder", "cone", "torus", "capsule")
SCHEMES = ("solid", "left_right", "stripes", "front_back", "patch")


def _primitive(kind: str, rng: np.random.Generator):
    import trimesh

    if kind == "box":
        m = trimesh.creation.box(extents=rng.uniform(0.5, 1.0, 3))
    elif kind == "sphere":
        m = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
        m.apply_scale(rng.uniform(0.6, 1.0, 3))
    elif kind == "cylinder":
        m = trimesh.creation.cylinder(radius=rng.uniform(0.2, 0.45), height=rng.uniform(0.4, 1.0), sections=32)
    elif kind == "cone":
        m = trimesh.creation.cone(radius=rng.uniform(0.25, 0.5), height=rng.uniform(0.5, 1.0), sections=32)
    elif kind == "torus":
        R = rng.uniform(0.3, 0.45)
        m = trimesh.creation.torus(major_radius=R, minor_radius=rng.uniform(0.08, 0.5 * R), major_sections=32,
                                   minor_sections=16)
    else:
        m = trimesh.creation.capsule(height=rng.uniform(0.3, 0.7), radius=rng.uniform(0.15, 0.3), count=[16, 16])
    # trimesh builds cylinders, cones and capsules along z: stand them up (+y) or lay them down at random
    if rng.random() < 0.6:
        m.apply_transform(trimesh.transformations.rotation_matrix(-math.pi / 2, [1, 0, 0]))
    tilt = trimesh.transformations.rotation_matrix(rng.uniform(-0.4, 0.4), [0, 0, 1])
    spin = trimesh.transformations.rotation_matrix(rng.uniform(0, 2 * math.pi), [0, 1, 0])
    m.apply_transform(spin @ tilt)
    m.vertices -= m.bounds.mean(0)
    return trimesh.remesh.subdivide_to_size(m.vertices, m.faces, max_edge=0.06, max_iter=12)


def _random_colour(rng):
    return np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.45, 0.95), rng.uniform(0.55, 0.95)))


def _complement(c):
    h, s, v = colorsys.rgb_to_hsv(*c)
    return np.array(colorsys.hsv_to_rgb((h + 0.5) % 1.0, s, v))


def _colour(v: np.ndarray, scheme: str, rng) -> np.ndarray:
    """Albedo [V,3] of a part's vertices ``v`` (object frame: +x right, +y up, +z towards the front view)."""
    a, b = _random_colour(rng), _random_colour(rng)
    centre = v.mean(0)
    if scheme == "left_right":
        side = v[:, 0] > centre[0]
    elif scheme == "stripes":
        period = rng.uniform(0.15, 0.35)
        side = np.floor((v[:, 1] - v[:, 1].min()) / (period / 2)) % 2 == 1
    elif scheme == "front_back":
        b = _complement(a)
        side = v[:, 2] < centre[2]
    elif scheme == "patch":
        d = rng.normal(size=3)
        d[2] = -abs(d[2]) if rng.random() < 0.5 else abs(d[2])
        d /= np.linalg.norm(d)
        radius = np.linalg.norm(v - centre, axis=1).max()
        side = (v - centre) @ d > 0.45 * radius
    else:
        side = np.zeros(len(v), bool)
    return np.where(side[:, None], b, a)


def make_object(seed: int) -> Mesh:
    """The toy object of ``seed``: vertex-coloured, centred, largest side ``EXTENT``."""
    rng = np.random.default_rng([seed, 20261129])
    n_parts = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
    verts, faces, cols, offset = [], [], [], 0
    for i in range(n_parts):
        v, f = _primitive(str(rng.choice(PRIMITIVES)), rng)
        v = v * rng.uniform(0.6, 1.0)
        if i:  # attach the part to the previous one: on its side, top or front/back
            prev = verts[-1]
            direction = rng.normal(size=3) * np.array([1.0, 0.7, 1.0])
            direction /= np.linalg.norm(direction)
            reach = 0.5 * (np.abs(prev - prev.mean(0)).max(0) + np.abs(v).max(0))
            v = v + prev.mean(0) + direction * reach * rng.uniform(0.55, 0.9)
        verts.append(v)
        faces.append(f + offset)
        cols.append(_colour(v, str(rng.choice(SCHEMES)), rng))
        offset += len(v)
    v, f, c = np.concatenate(verts), np.concatenate(faces), np.concatenate(cols)
    lo, hi = v.min(0), v.max(0)
    v = (v - (lo + hi) / 2) * (EXTENT / (hi - lo).max())
    mesh = Mesh(torch.from_numpy(v).float(), torch.from_numpy(f).long())
    n = mesh.vertex_normals().numpy()
    shade = SHADE_AMBIENT + (1 - SHADE_AMBIENT) * np.clip(n @ LIGHT, 0, None)
    mesh.vc = torch.from_numpy(np.clip(c * shade[:, None], 0, 1)).float()
    return mesh


def object_cameras(seed: int, n: int, resolution: int, front: bool = False) -> list:
    """``n`` orbit cameras of object ``seed``'s training views: elevations uniform in
    ``ELEVATION_RANGE``, azimuths uniform; with ``front`` the first is the input view of image
    mode (elevation 0, azimuth 0). Returns [(elevation, azimuth, Camera)]."""
    rng = np.random.default_rng([seed, 7])
    out = []
    for i in range(n):
        if front and i == 0:
            el, az = 0.0, 0.0
        else:
            el, az = float(rng.uniform(*ELEVATION_RANGE)), float(rng.uniform(0, 360))
        out.append((el, az, Camera.orbit(el, az, RADIUS, FOVY, resolution)))
    return out


@torch.no_grad()
def render_views(mesh: Mesh, cameras, backend: str = "torch"):
    """RGB [N,3,H,W] on white and masks [N,1,H,W] of ``mesh`` from ``cameras`` (cameras.Camera)."""
    from mesh_renderer import render_mesh

    outs = [render_mesh(mesh, cam, (1.0, 1.0, 1.0), backend) for cam in cameras]
    return torch.stack([o["image"] for o in outs]), torch.stack([o["alpha"] for o in outs])


def render_rgba(mesh: Mesh, camera) -> np.ndarray:
    """An RGBA image [H,W,4] in [0,1] of ``mesh`` from ``camera`` (the input image of image mode)."""
    rgb, alpha = render_views(mesh, [camera])
    return torch.cat([rgb[0], alpha[0]], 0).permute(1, 2, 0).numpy()


# ----------------------------------------------------------------- Zero123's relative camera
def gltf_to_blender(p: np.ndarray) -> np.ndarray:
    """World +y up (glTF, ours) -> Blender's +z up, as Blender's glTF importer maps positions."""
    x, y, z = p
    return np.array([x, -z, y])


def cartesian_to_spherical(xyz: np.ndarray):
    """zero123 ``ldm/data/simple.py``: polar angle from +z, azimuth atan2(y, x), distance."""
    xy = xyz[0] ** 2 + xyz[1] ** 2
    z = math.sqrt(xy + xyz[2] ** 2)
    theta = math.atan2(math.sqrt(xy), xyz[2])
    azimuth = math.atan2(xyz[1], xyz[0])
    return theta, azimuth, z


def zero123_T(cond_c2w: np.ndarray, target_c2w: np.ndarray) -> np.ndarray:
    """zero123's ``get_T`` from the two camera centres: [d_polar, sin(d_azimuth mod 2pi),
    cos(d_azimuth mod 2pi), d_radius], after mapping our +y-up world to Blender's +z up. This is
    how Zero123's training data defines the camera input, computed without guidance/zero123.py."""
    th_c, az_c, z_c = cartesian_to_spherical(gltf_to_blender(np.asarray(cond_c2w, np.float64)[:3, 3]))
    th_t, az_t, z_t = cartesian_to_spherical(gltf_to_blender(np.asarray(target_c2w, np.float64)[:3, 3]))
    d_az = (az_t - az_c) % (2 * math.pi)
    return np.array([th_t - th_c, math.sin(d_az), math.cos(d_az), z_t - z_c], np.float32)


def spherical_to_cartesian(theta: float, azimuth: float, z: float) -> np.ndarray:
    """The inverse of ``cartesian_to_spherical`` (Blender frame)."""
    return np.array([z * math.sin(theta) * math.cos(azimuth), z * math.sin(theta) * math.sin(azimuth),
                     z * math.cos(theta)])


def blender_to_gltf(p: np.ndarray) -> np.ndarray:
    """The inverse of ``gltf_to_blender``: Blender's +z up -> our +y up."""
    x, y, z = p
    return np.array([x, z, -y])


def camera_from_zero123_T(T, cond_c2w: np.ndarray, radius: float | None = None) -> np.ndarray:
    """The target camera (OpenGL c2w [4,4], looking at the origin) that ``zero123_T(cond_c2w, .)``
    maps to ``T`` = [d_polar, sin(d_azimuth), cos(d_azimuth), d_radius]: Zero123's training-data
    convention read backwards, computed without guidance/zero123.py. ``radius`` replaces the
    distance ``T[3]`` gives (Stable-Zero123's last entry is not a distance)."""
    from cameras import look_at

    T = np.asarray(T, np.float64)
    th_c, az_c, z_c = cartesian_to_spherical(gltf_to_blender(np.asarray(cond_c2w, np.float64)[:3, 3]))
    th = float(np.clip(th_c + T[0], 1e-4, math.pi - 1e-4))
    pos = blender_to_gltf(spherical_to_cartesian(th, az_c + math.atan2(T[1], T[2]),
                                                 z_c + T[3] if radius is None else radius))
    c2w = np.eye(4)
    c2w[:3, :3] = look_at(pos, np.zeros(3))
    c2w[:3, 3] = pos
    return c2w.astype(np.float32)


def write_example(seed: int, folder: str, size: int = 256) -> tuple:
    """Object ``seed``'s input image (RGBA PNG of the front view, image mode's camera: elevation 0,
    azimuth 0, ``RADIUS``, ``FOVY``) and its ground-truth mesh (PLY with vertex colours) in
    ``folder``; returns their paths."""
    import os

    import trimesh

    from io_utils import atomic_write, save_image

    os.makedirs(folder, exist_ok=True)
    mesh = make_object(seed)
    png = os.path.join(folder, f"toy_{seed}_rgba.png")
    ply = os.path.join(folder, f"toy_{seed}.ply")
    save_image(png, render_rgba(mesh, Camera.orbit(0.0, 0.0, RADIUS, FOVY, size)))
    colours = np.concatenate([mesh.vc.numpy(), np.ones((len(mesh.v), 1))], 1)
    tm = trimesh.Trimesh(mesh.v.numpy(), mesh.f.numpy(), vertex_colors=(colours * 255 + 0.5).astype(np.uint8),
                         process=False)
    atomic_write(ply, lambda tmp: tm.export(tmp, file_type="ply"))
    return png, ply


def write_view(seed: int, folder: str, azimuth: float, elevation: float = 0.0, size: int = 256) -> str:
    """Object ``seed`` seen from ``azimuth`` / ``elevation`` (degrees, the orbit convention of image
    mode's ``input_azimuths``: azimuth 0 is ``write_example``'s input view) as an RGBA PNG in
    ``folder``; returns its path."""
    import os

    from io_utils import save_image

    os.makedirs(folder, exist_ok=True)
    name = f"toy_{seed}_az{azimuth:g}" + (f"_el{elevation:g}" if elevation else "") + "_rgba.png"
    png = os.path.join(folder, name)
    save_image(png, render_rgba(make_object(seed), Camera.orbit(elevation, azimuth, RADIUS, FOVY, size)))
    return png
