"""Posed views: the data that drives reconstruction mode and evaluation.

A ``PosedViews`` holds cameras with RGB images and masks, in a normalised frame (object about
the origin, cameras at distance ~``radius``) plus the similarity transform back to the source's
own coordinates. Sources: a NeRF/Blender ``transforms.json`` folder, a textured mesh rendered
with the mesh renderer, or a 3DGS ``.ply`` rendered with the Gaussian renderer.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from cameras import Camera
from splat_formats import GAUSSIAN_EXTENSIONS, is_compressed_ply, is_gaussian_glb, is_sog, is_spz


class ViewsError(ValueError):
    """Malformed multi-view input."""


@dataclass
class PosedViews:
    cameras: list  # list[Camera], normalised frame
    rgbs: torch.Tensor  # [N,3,H,W] in [0,1], colour where mask > 0
    masks: torch.Tensor  # [N,1,H,W] in [0,1]
    center: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))  # source = norm / scale + center
    scale: float = 1.0
    warnings: list = field(default_factory=list)  # what reading the source had to guess (e.g. no colour)

    def __len__(self):
        return len(self.cameras)

    def to_source(self, v: torch.Tensor) -> torch.Tensor:
        """Positions from the normalised frame back to the source's coordinates."""
        return v / self.scale + torch.as_tensor(self.center, dtype=v.dtype, device=v.device)

    def to_normalised(self, v: torch.Tensor) -> torch.Tensor:
        """Positions from the source's coordinates into the normalised frame (inverse of to_source)."""
        return (v - torch.as_tensor(self.center, dtype=v.dtype, device=v.device)) * self.scale

    def gaussians_to_source(self, model):
        """A copy of Gaussians (gaussians.GaussianModel) moved as ``to_source`` moves positions."""
        return model.transformed(1.0 / self.scale, self.center)

    def gaussians_to_normalised(self, model):
        """A copy of Gaussians moved as ``to_normalised`` moves positions (inverse of gaussians_to_source)."""
        return model.transformed(self.scale, -np.asarray(self.center, np.float32) * self.scale)


def orbit_cameras(n: int, resolution: int, radius: float, fovy: float, min_elev: float = -45.0,
                  max_elev: float = 60.0, offset: float = 0.0):
    """``n`` cameras spread evenly over the band of elevations (a Fibonacci spiral: azimuths step
    by the golden angle, sin(elevation) uniform). A different ``offset`` in (0, 1) gives a
    disjoint set, used for held-out views."""
    golden = 180.0 * (3 - math.sqrt(5))
    s0, s1 = math.sin(math.radians(min_elev)), math.sin(math.radians(max_elev))
    cams = []
    for i in range(n):
        s = s0 + (s1 - s0) * (i + 0.5 + offset) / (n + 1)
        el = math.degrees(math.asin(s))
        az = (i + offset) * golden % 360.0
        cams.append(Camera.orbit(el, az, radius, fovy, resolution))
    return cams


def normalise_mesh(mesh, extent: float = 1.0):
    """Centre ``mesh`` on its bounding box and scale its largest side to ``extent`` (in place);
    returns (center, scale) with source = v / scale + center."""
    lo, hi = mesh.bounds()
    center = ((lo + hi) / 2).numpy()
    size = float((hi - lo).max())
    if not size > 1e-12:
        raise ViewsError(f"{getattr(mesh, 'path', None) or 'the mesh'}: zero extent (every vertex at one point): "
                         "nothing to reconstruct")
    scale = extent / size
    mesh.v = (mesh.v - torch.from_numpy(center)) * scale
    return center, scale


def from_mesh(path: str, num_views: int, resolution: int, radius: float, fovy: float, extent: float = 1.0,
              min_elev=-45.0, max_elev=60.0, backend="auto", device="cpu", max_texture=4096) -> PosedViews:
    """Render a (textured or coloured) mesh from ``num_views`` orbit cameras."""
    from mesh import Mesh
    from mesh_renderer import render_mesh

    mesh = Mesh.load(path, max_texture=max_texture).to(device)
    mesh.path = path
    center, scale = normalise_mesh(mesh, extent)
    cams = orbit_cameras(num_views, resolution, radius, fovy, min_elev, max_elev)
    rgbs, masks = [], []
    with torch.no_grad():
        for c in cams:
            o = render_mesh(mesh, c, bg_color=(0, 0, 0), backend=backend)
            rgbs.append(o["image"].cpu())
            masks.append(o["alpha"].cpu())
    return PosedViews(cams, torch.stack(rgbs), torch.stack(masks), center.astype(np.float32), scale, mesh.warnings)


def from_gaussians(path: str, num_views: int, resolution: int, radius: float, fovy: float, extent: float = 1.0,
                   min_elev=-45.0, max_elev=60.0, backend="auto", device="cpu", min_opacity=0.05) -> PosedViews:
    """Render a 3DGS .ply from ``num_views`` orbit cameras (normalised on its opaque Gaussians)."""
    from gaussians import GaussianModel
    from gs_renderer import render

    g = GaussianModel.load(path, device=device)
    solid = g.means[g.opacities > min_opacity].detach()
    if solid.shape[0] == 0:
        raise ViewsError(f"{path}: no Gaussian is more than {min_opacity} opaque")
    lo, hi = torch.quantile(solid, 0.005, dim=0), torch.quantile(solid, 0.995, dim=0)  # robust to floaters
    center = ((lo + hi) / 2)
    size = float((hi - lo).max())
    if not size > 1e-12:
        raise ViewsError(f"{path}: zero extent (the opaque Gaussians sit at one point): nothing to reconstruct")
    scale = extent / size
    with torch.no_grad():
        g.params["means"] = ((g.params["means"] - center) * scale).requires_grad_(True)
        g.params["scales"] = (g.params["scales"] + math.log(scale)).requires_grad_(True)
    cams = orbit_cameras(num_views, resolution, radius, fovy, min_elev, max_elev)
    rgbs, masks = [], []
    with torch.no_grad():
        for c in cams:
            o = render(g, c, bg_color=(0, 0, 0), backend=backend)
            a = o["alpha"].clamp(0, 1)
            rgbs.append((o["image"] / a.clamp_min(1e-6) * (a > 0)).clamp(0, 1).cpu())  # un-premultiply
            masks.append(a.cpu())
    return PosedViews(cams, torch.stack(rgbs), torch.stack(masks), center.cpu().numpy().astype(np.float32), scale)


def pose_problem(m: np.ndarray) -> str | None:
    """Why a 4x4 camera-to-world matrix is no camera pose (None if it is one): its rotation part
    must have columns of one non-zero length, at right angles, and no mirror (tools scale the
    whole scene, so a uniform scale is allowed); the last row must be 0 0 0 1."""
    r = m[:3, :3]
    norms = np.linalg.norm(r, axis=0)
    if not norms.min() > 1e-8:
        return "has a zero rotation column (all zeros?)"
    if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
        return f"has last row {m[3].tolist()}, not 0 0 0 1"
    u = r / norms
    if np.abs(u.T @ u - np.eye(3)).max() > 1e-3 or norms.max() / norms.min() > 1.001:
        return "has a rotation part that is not a rotation (columns not at right angles or of different lengths)"
    if np.linalg.det(u) < 0:
        return "mirrors the scene (its rotation part has a negative determinant)"
    return None


def from_transforms(folder: str, resolution: int, radius: float) -> PosedViews:
    """A NeRF/Blender folder: ``transforms.json`` with ``camera_angle_x`` and frames of
    ``file_path`` + 4x4 ``transform_matrix`` (OpenGL camera-to-world), RGBA images. The scene is
    recentred on the point nearest to all optical axes and scaled so the mean camera distance is
    ``radius``."""
    from io_utils import load_image, load_json

    path = os.path.join(folder, "transforms.json") if os.path.isdir(folder) else folder
    folder = os.path.dirname(path)
    if not os.path.isfile(path):
        raise ViewsError(f"no transforms.json in {folder}")
    try:
        meta = load_json(path)
    except json.JSONDecodeError as e:
        raise ViewsError(f"{path}: not valid JSON ({e})") from None
    if "camera_angle_x" not in meta or not isinstance(meta.get("frames"), list) or not meta["frames"]:
        raise ViewsError(f"{path}: needs 'camera_angle_x' and a non-empty 'frames' list")
    fovx = meta["camera_angle_x"]
    if isinstance(fovx, bool) or not isinstance(fovx, (int, float)) or not 0 < fovx < math.pi:
        raise ViewsError(f"{path}: camera_angle_x must be the horizontal field of view in radians, in (0, pi), "
                         f"got {fovx!r}")
    fovx = float(fovx)
    c2ws, imgs, size = [], [], None
    for i, fr in enumerate(meta["frames"]):
        if "file_path" not in fr or "transform_matrix" not in fr:
            raise ViewsError(f"{path}: frame {i} needs 'file_path' and 'transform_matrix'")
        try:
            m = np.asarray(fr["transform_matrix"], np.float64)
        except (TypeError, ValueError):
            m = np.zeros(0)
        if m.shape != (4, 4) or not np.isfinite(m).all():
            raise ViewsError(f"{path}: frame {i} ({fr.get('file_path')}) transform_matrix is not a finite 4x4 matrix")
        why = pose_problem(m)
        if why:
            raise ViewsError(f"{path}: frame {i} ({fr.get('file_path')}) transform_matrix {why}; expected a "
                             "camera-to-world matrix (rotation columns, translation, last row 0 0 0 1)")
        fp = os.path.join(folder, fr["file_path"])
        cand = [fp, fp + ".png"] if not os.path.splitext(fp)[1] else [fp]
        fp = next((c for c in cand if os.path.isfile(c)), None)
        if fp is None:
            raise ViewsError(f"{path}: frame {i} image not found: {fr['file_path']}")
        img = load_image(fp)
        if img.shape[2] != 4:
            raise ViewsError(f"{fp}: frames must be RGBA (transparent background)")
        if size is None:
            size = img.shape[:2]
        elif img.shape[:2] != size:
            raise ViewsError(f"{fp}: size {img.shape[1]}x{img.shape[0]} differs from the first frame's "
                             f"{size[1]}x{size[0]}")
        c2ws.append(m)
        imgs.append(img)
    H, W = size
    if len(c2ws) > 1 and all(np.allclose(m, c2ws[0], atol=1e-6) for m in c2ws[1:]):
        raise ViewsError(f"{path}: all {len(c2ws)} frames have the same transform_matrix (one pose): views from one "
                         "place cannot show an object's shape; give each frame its own camera pose")
    # centre: least-squares point nearest to every optical axis (-z of each camera)
    A, b = np.zeros((3, 3)), np.zeros(3)
    for m in c2ws:
        d = -m[:3, 2] / np.linalg.norm(m[:3, 2])
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ m[:3, 3]
    center = np.linalg.lstsq(A, b, rcond=None)[0]
    dist = np.mean([np.linalg.norm(m[:3, 3] - center) for m in c2ws])
    if not dist > 1e-9:
        raise ViewsError(f"{path}: every camera sits where the optical axes meet (the frames' transform_matrix "
                         "translations are all the same point); the views cannot be placed")
    scale = radius / dist
    fovy = 2 * math.atan(math.tan(fovx / 2) * H / W)
    h = resolution
    w = max(1, round(resolution * W / H))
    cams, rgbs, masks = [], [], []
    import cv2

    for m, img in zip(c2ws, imgs):
        c2w = m.copy()
        c2w[:3, :3] /= np.linalg.norm(c2w[:3, :3], axis=0, keepdims=True)
        c2w[:3, 3] = (c2w[:3, 3] - center) * scale
        cams.append(Camera(c2w, fovy, w, h))
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        t = torch.from_numpy(img).permute(2, 0, 1)
        rgbs.append(t[:3])
        masks.append(t[3:])
    return PosedViews(cams, torch.stack(rgbs), torch.stack(masks), center.astype(np.float32), scale)


def load_views(source: str, cfg, device="cpu") -> PosedViews:
    """Posed views from ``source`` (folder / transforms.json, mesh file, or Gaussians: is_gaussian_file)."""
    if not source:
        raise ViewsError("recon mode needs input=<transforms.json folder | mesh .obj/.glb | 3DGS .ply>")
    if not os.path.exists(source):
        raise ViewsError(f"recon input not found: {source}")
    ext = os.path.splitext(source)[1].lower()
    kw = dict(resolution=cfg.ref_size, radius=cfg.radius)
    if os.path.isdir(source) or ext == ".json":
        return from_transforms(source, **kw)
    orbit = dict(num_views=cfg.recon_num_views, fovy=cfg.fovy, extent=cfg.recon_extent,
                 min_elev=cfg.recon_min_elevation, max_elev=cfg.recon_max_elevation, device=device)
    if is_gaussian_file(source):
        return from_gaussians(source, backend=cfg.rasterizer, **kw, **orbit)
    if ext in MESH_EXTENSIONS:
        return from_mesh(source, backend=cfg.mesh_renderer, max_texture=cfg.input_max_texture, **kw, **orbit)
    raise ViewsError(f"unsupported recon input '{source}': use a transforms.json folder, a mesh "
                     f"({' '.join(MESH_EXTENSIONS)}) or Gaussians ({' '.join(GAUSSIAN_EXTENSIONS)})")


def is_gaussian_file(path: str) -> bool:
    """Gaussians rather than a mesh: a .splat, .spz or .sog, a 3DGS .ply (standard or compressed),
    or a .glb with a KHR_gaussian_splatting primitive."""
    ext = os.path.splitext(path)[1].lower()
    if ext in (".splat", ".spz", ".sog"):  # only Gaussians have these endings
        return True
    if ext == ".ply":
        return is_gaussian_ply(path)
    if ext == ".glb":
        return is_gaussian_glb(path)
    return is_spz(path) or is_sog(path)


MESH_EXTENSIONS = (".obj", ".glb", ".gltf", ".ply", ".off", ".stl", ".dae", ".3mf")  # read through trimesh


def is_gaussian_ply(path: str) -> bool:
    """A 3DGS .ply (vertices with opacity and scales, or PlayCanvas's compressed layout: a chunk
    element and packed_* properties; no faces) rather than a mesh .ply."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    end = head.find(b"end_header")
    header = head[:end if end >= 0 else len(head)].decode("ascii", errors="replace").split("\n")
    props = {ln.split()[-1] for ln in header if ln.startswith("property")}
    faces = any(ln.startswith("element face") and ln.split()[-1] != "0" for ln in header)
    return not faces and ({"opacity", "scale_0"} <= props or is_compressed_ply(path))
