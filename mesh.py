"""Triangle meshes with one UV per vertex and an albedo texture; .obj/.mtl/.png and .glb I/O.

Indexing is single-index (as xatlas and glTF produce): a vertex that lies on a UV seam appears
once per UV chart. Texture convention: ``vt`` has its origin at the bottom-left of the image
(OBJ / OpenGL); ``albedo`` is an [H, W, 3] float image in [0, 1] whose row 0 is the top.
All writes are atomic: files are written under a temporary name and renamed when complete.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from io_utils import atomic_write, load_image, save_image


class MeshFormatError(ValueError):
    """A mesh file that cannot be read as a triangle mesh."""


@dataclass
class Mesh:
    v: torch.Tensor  # [V, 3] float32 positions
    f: torch.Tensor  # [F, 3] int64 triangle indices
    vt: torch.Tensor | None = None  # [V, 2] float32 UVs (origin bottom-left)
    albedo: torch.Tensor | None = None  # [H, W, 3] float32 texture, row 0 = top

    def __post_init__(self):
        self.v = torch.as_tensor(self.v, dtype=torch.float32)
        self.f = torch.as_tensor(self.f, dtype=torch.long)
        if self.vt is not None:
            self.vt = torch.as_tensor(self.vt, dtype=torch.float32)
        if self.albedo is not None:
            self.albedo = torch.as_tensor(self.albedo, dtype=torch.float32)
        if self.v.dim() != 2 or self.v.shape[1] != 3 or self.f.dim() != 2 or self.f.shape[1] != 3:
            raise MeshFormatError(f"mesh needs v [V,3] and f [F,3], got {tuple(self.v.shape)} and {tuple(self.f.shape)}")
        if self.f.numel() and (self.f.min() < 0 or self.f.max() >= self.v.shape[0]):
            raise MeshFormatError("mesh face indices out of range")

    @property
    def device(self):
        return self.v.device

    def to(self, device) -> "Mesh":
        m = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Mesh(m(self.v), m(self.f), m(self.vt), m(self.albedo))

    def face_normals(self, v=None) -> torch.Tensor:
        v = self.v if v is None else v
        a, b, c = v[self.f[:, 0]], v[self.f[:, 1]], v[self.f[:, 2]]
        return torch.nn.functional.normalize(torch.cross(b - a, c - a, dim=-1), dim=-1)

    def vertex_normals(self, v=None) -> torch.Tensor:
        """Area-weighted vertex normals (differentiable in ``v``)."""
        v = self.v if v is None else v
        a, b, c = v[self.f[:, 0]], v[self.f[:, 1]], v[self.f[:, 2]]
        fn = torch.cross(b - a, c - a, dim=-1)  # length = 2 * area
        vn = torch.zeros_like(v).index_add(0, self.f.reshape(-1), fn.repeat_interleave(3, dim=0))
        return torch.nn.functional.normalize(vn, dim=-1)

    def bounds(self):
        return self.v.amin(0), self.v.amax(0)

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str, albedo_path: str | None = None) -> "Mesh":
        """Load .obj (with its .mtl's map_Kd, or ``albedo_path``) or .glb/.gltf/.ply/.off/.stl."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"mesh file not found: {path}")
        ext = os.path.splitext(path)[1].lower()
        mesh = cls._load_obj(path) if ext == ".obj" else cls._load_trimesh(path)
        if albedo_path is not None:
            mesh.albedo = torch.from_numpy(load_image(albedo_path)[..., :3].copy())
        if mesh.f.shape[0] == 0:
            raise MeshFormatError(f"{path}: mesh has no faces")
        for name, t in (("vertex positions", mesh.v), ("texture coordinates", mesh.vt), ("texture", mesh.albedo)):
            if t is not None and not torch.isfinite(t).all():
                bad = int((~torch.isfinite(t)).reshape(t.shape[0], -1).any(1).sum())
                raise MeshFormatError(f"{path}: {bad} {name} row(s) hold NaN or inf values; fix or remove them")
        return mesh

    @classmethod
    def _load_obj(cls, path: str) -> "Mesh":
        vs, vts, faces, mtllib = [], [], [], None
        with open(path, "r", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if not parts:
                    continue
                tag = parts[0]
                try:
                    if tag == "v":
                        vs.append([float(x) for x in parts[1:4]])
                    elif tag == "vt":
                        vts.append([float(x) for x in parts[1:3]])
                    elif tag == "f":
                        corners = []
                        for c in parts[1:]:
                            idx = c.split("/")
                            vi = int(idx[0])
                            ti = int(idx[1]) if len(idx) > 1 and idx[1] else 0
                            corners.append((vi - 1 if vi > 0 else len(vs) + vi,
                                            (ti - 1 if ti > 0 else len(vts) + ti) if ti else -1))
                        for k in range(1, len(corners) - 1):  # fan-triangulate polygons
                            faces.append((corners[0], corners[k], corners[k + 1]))
                    elif tag == "mtllib":
                        mtllib = line.split(None, 1)[1].strip()
                except (ValueError, IndexError):
                    raise MeshFormatError(f"{path}: malformed OBJ line: {line.strip()[:60]}") from None
        if not vs:
            raise MeshFormatError(f"{path}: no vertices (not an OBJ mesh?)")
        v = np.asarray(vs, np.float32)
        if not faces:
            raise MeshFormatError(f"{path}: mesh has no faces")
        corners = np.asarray(faces, np.int64).reshape(-1, 2)  # (v index, vt index) per corner
        if corners[:, 0].max() >= len(v) or corners[:, 0].min() < 0:
            raise MeshFormatError(f"{path}: face refers to a vertex that does not exist")
        has_uv = bool(vts) and (corners[:, 1] >= 0).all()
        if has_uv:
            if corners[:, 1].max() >= len(vts):
                raise MeshFormatError(f"{path}: face refers to a texture coordinate that does not exist")
            uniq, inv = np.unique(corners, axis=0, return_inverse=True)  # weld (v, vt) pairs
            mesh = cls(v[uniq[:, 0]], inv.reshape(-1, 3), np.asarray(vts, np.float32)[uniq[:, 1]])
        else:
            mesh = cls(v, corners[:, 0].reshape(-1, 3))
        if mtllib:
            tex = _mtl_texture(os.path.join(os.path.dirname(path), mtllib))
            if tex is not None:
                mesh.albedo = torch.from_numpy(load_image(tex)[..., :3].copy())
        return mesh

    @classmethod
    def _load_trimesh(cls, path: str) -> "Mesh":
        import trimesh

        try:
            scene = trimesh.load(path, process=False, force="scene")
        except Exception as e:
            raise MeshFormatError(f"{path}: cannot read mesh ({e})") from None
        geoms = [g for g in scene.dump()] if hasattr(scene, "dump") else [scene]
        geoms = [g for g in geoms if isinstance(g, trimesh.Trimesh) and len(g.faces)]
        if not geoms:
            raise MeshFormatError(f"{path}: no triangle mesh inside")
        g = geoms[0] if len(geoms) == 1 else trimesh.util.concatenate(geoms)
        vt, albedo = None, None
        vis = getattr(g, "visual", None)
        if vis is not None and getattr(vis, "uv", None) is not None and len(vis.uv) == len(g.vertices):
            vt = np.asarray(vis.uv, np.float32)
            img = getattr(getattr(vis, "material", None), "baseColorTexture", None)
            if img is None:
                img = getattr(getattr(vis, "material", None), "image", None)
            if img is not None:
                albedo = np.asarray(img.convert("RGB"), np.float32) / 255.0
        return cls(np.asarray(g.vertices, np.float32), np.asarray(g.faces, np.int64), vt, albedo)

    # ------------------------------------------------------------------ saving
    def save(self, path: str):
        ext = os.path.splitext(path)[1].lower()
        if ext == ".obj":
            self.save_obj(path)
        elif ext in (".glb", ".gltf"):
            self.save_glb(path)
        else:
            raise ValueError(f"unsupported mesh format '{ext}': use .obj or .glb")

    def _np(self):
        v = self.v.detach().cpu().numpy()
        f = self.f.detach().cpu().numpy()
        vt = None if self.vt is None else self.vt.detach().cpu().numpy()
        tex = None if self.albedo is None else self.albedo.detach().cpu().numpy()
        return v, f, vt, tex

    def save_obj(self, path: str):
        """Write ``name.obj`` + ``name.mtl`` + ``name_albedo.png`` (texture first, .obj last)."""
        v, f, vt, tex = self._np()
        vn = self.vertex_normals().detach().cpu().numpy()
        base = os.path.splitext(path)[0]
        name = os.path.basename(base)
        lines = []
        if tex is not None and vt is not None:
            save_image(base + "_albedo.png", tex)
            mtl = (f"newmtl material_0\nKa 1.0 1.0 1.0\nKd 1.0 1.0 1.0\nKs 0.0 0.0 0.0\nd 1.0\nillum 1\n"
                   f"map_Kd {name}_albedo.png\n")
            atomic_write(base + ".mtl", lambda tmp: open(tmp, "w").write(mtl))
            lines += [f"mtllib {name}.mtl", "usemtl material_0"]
        lines += [f"v {a:.6f} {b:.6f} {c:.6f}" for a, b, c in v]
        if vt is not None:
            lines += [f"vt {a:.6f} {b:.6f}" for a, b in vt]
        lines += [f"vn {a:.6f} {b:.6f} {c:.6f}" for a, b, c in vn]
        fi = f + 1
        if vt is not None:
            lines += [f"f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}" for a, b, c in fi]
        else:
            lines += [f"f {a}//{a} {b}//{b} {c}//{c}" for a, b, c in fi]
        text = "\n".join(lines) + "\n"
        atomic_write(path, lambda tmp: open(tmp, "w").write(text))

    def to_trimesh(self):
        import trimesh
        from PIL import Image

        v, f, vt, tex = self._np()
        visual = None
        if vt is not None:
            img = None if tex is None else Image.fromarray((np.clip(tex, 0, 1) * 255 + 0.5).astype(np.uint8))
            material = trimesh.visual.material.PBRMaterial(baseColorTexture=img, metallicFactor=0.0,
                                                           roughnessFactor=1.0, doubleSided=False)
            visual = trimesh.visual.TextureVisuals(uv=vt, material=material)
        return trimesh.Trimesh(vertices=v, faces=f, vertex_normals=self.vertex_normals().detach().cpu().numpy(),
                               visual=visual, process=False)

    def save_glb(self, path: str):
        """Binary glTF 2.0 with a PBR material whose base colour is the albedo texture."""
        data = self.to_trimesh().export(file_type="glb")
        atomic_write(path, lambda tmp: open(tmp, "wb").write(data))


def _mtl_texture(mtl_path: str):
    if not os.path.isfile(mtl_path):
        return None
    with open(mtl_path, errors="replace") as fh:
        for line in fh:
            parts = line.split()
            if parts and parts[0] == "map_Kd" and len(parts) > 1:
                tex = os.path.join(os.path.dirname(mtl_path), parts[-1])
                return tex if os.path.isfile(tex) else None
    return None
