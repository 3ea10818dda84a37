"""Triangle meshes with one UV per vertex and an albedo texture; .obj/.mtl/.png and .glb I/O.

Indexing is single-index (as xatlas and glTF produce): a vertex that lies on a UV seam appears
once per UV chart. Texture convention: ``vt`` has its origin at the bottom-left of the image
(OBJ / OpenGL); ``albedo`` is an [H, W, 3] float image in [0, 1] whose row 0 is the top.
All writes are atomic: files are written under a temporary name and renamed when complete.
"""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from io_utils import atomic_write, bytes_writer, image_writer, load_image, require_file, text_writer, write_together

DEFAULT_MAX_TEXTURE = 4096  # longest side of an input texture or packed atlas (config: input_max_texture)
NEUTRAL_GREY = 0.5  # the colour of a mesh that has no texture, material colour or vertex colours


class MeshFormatError(ValueError):
    """A mesh file that cannot be read as a triangle mesh."""


@dataclass
class Mesh:
    v: torch.Tensor  # [V, 3] float32 positions
    f: torch.Tensor  # [F, 3] int64 triangle indices
    vt: torch.Tensor | None = None  # [V, 2] float32 UVs (origin bottom-left)
    albedo: torch.Tensor | None = None  # [H, W, 3] float32 texture, row 0 = top
    vc: torch.Tensor | None = None  # [V, 3] float32 vertex colours in [0, 1], multiplying the texture (as glTF)
    warnings: list = field(default_factory=list)  # what the loader had to guess (e.g. no colour: neutral grey)

    def __post_init__(self):
        self.v = torch.as_tensor(self.v, dtype=torch.float32)
        self.f = torch.as_tensor(self.f, dtype=torch.long)
        if self.vt is not None:
            self.vt = torch.as_tensor(self.vt, dtype=torch.float32)
        if self.albedo is not None:
            self.albedo = torch.as_tensor(self.albedo, dtype=torch.float32)
        if self.vc is not None:
            self.vc = torch.as_tensor(self.vc, dtype=torch.float32)
            if self.vc.shape != self.v.shape:
                raise MeshFormatError(f"vertex colours must be [V,3] like v, got {tuple(self.vc.shape)}")
        if self.v.dim() != 2 or self.v.shape[1] != 3 or self.f.dim() != 2 or self.f.shape[1] != 3:
            raise MeshFormatError(f"mesh needs v [V,3] and f [F,3], got {tuple(self.v.shape)} and {tuple(self.f.shape)}")
        if self.f.numel() and (self.f.min() < 0 or self.f.max() >= self.v.shape[0]):
            raise MeshFormatError("mesh face indices out of range")

    @property
    def device(self):
        return self.v.device

    def to(self, device) -> "Mesh":
        m = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Mesh(m(self.v), m(self.f), m(self.vt), m(self.albedo), m(self.vc), list(self.warnings))

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
    def load(cls, path: str, albedo_path: str | None = None, max_texture: int = DEFAULT_MAX_TEXTURE) -> "Mesh":
        """Read any mesh file trimesh reads (.obj + .mtl, .glb/.gltf, .ply, .off, .stl, ...) into one
        single-index textured mesh (see ``read_mesh``); ``albedo_path`` replaces the texture."""
        mesh = read_mesh(path, max_texture)
        if albedo_path is not None:
            if mesh.vt is None:
                raise MeshFormatError(f"{path}: albedo_path given but the mesh has no texture coordinates")
            mesh.albedo = torch.from_numpy(load_image(albedo_path)[..., :3].copy())
            mesh.vc = None
        _check_finite(path, mesh)
        return mesh

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
        """Write ``name.obj`` + ``name.mtl`` + ``name_albedo.png``, published together (written under
        temporary names, renamed when all are complete, the .obj last)."""
        v, f, vt, tex = self._np()
        vn = self.vertex_normals().detach().cpu().numpy()
        vc = None if self.vc is None else self.vc.detach().cpu().numpy()
        base = os.path.splitext(path)[0]
        name = os.path.basename(base)
        lines, files = [], []
        if tex is not None and vt is not None:
            mtl = (f"newmtl material_0\nKa 1.0 1.0 1.0\nKd 1.0 1.0 1.0\nKs 0.0 0.0 0.0\nd 1.0\nillum 1\n"
                   f"map_Kd {name}_albedo.png\n")
            albedo_path, mtl_path, _ = mesh_files(path)
            files += [(albedo_path, image_writer(tex)), (mtl_path, text_writer(mtl))]
            lines += [f"mtllib {name}.mtl", "usemtl material_0"]
        if vc is None:
            lines += [f"v {a:.6f} {b:.6f} {c:.6f}" for a, b, c in v]
        else:  # vertex colours after the position (the common extension MeshLab and Blender read)
            lines += [f"v {a:.6f} {b:.6f} {c:.6f} {r:.4f} {g:.4f} {bb:.4f}" for (a, b, c), (r, g, bb) in zip(v, vc)]
        if vt is not None:
            lines += [f"vt {a:.6f} {b:.6f}" for a, b in vt]
        lines += [f"vn {a:.6f} {b:.6f} {c:.6f}" for a, b, c in vn]
        fi = f + 1
        if vt is not None:
            lines += [f"f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}" for a, b, c in fi]
        else:
            lines += [f"f {a}//{a} {b}//{b} {c}//{c}" for a, b, c in fi]
        text = "\n".join(lines) + "\n"
        write_together(files + [(path, text_writer(text))])  # all three or none; the .obj renamed last

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
        elif self.vc is not None:
            rgba = np.concatenate([self.vc.detach().cpu().numpy(), np.ones((len(v), 1), np.float32)], 1)
            visual = trimesh.visual.ColorVisuals(vertex_colors=(np.clip(rgba, 0, 1) * 255 + 0.5).astype(np.uint8))
        return trimesh.Trimesh(vertices=v, faces=f, vertex_normals=self.vertex_normals().detach().cpu().numpy(),
                               visual=visual, process=False)

    def save_glb(self, path: str):
        """Binary glTF 2.0 with a PBR material whose base colour is the albedo texture."""
        data = self.to_trimesh().export(file_type="glb")
        atomic_write(path, bytes_writer(data))




# ------------------------------------------------------------- reading what other tools write

# Texture options of an MTL map statement (Wavefront MTL specification, "Options for texture map
# statements") and how many arguments each takes; -o, -s and -t take one to three numbers.
_MTL_OPTIONS = {"-blendu": 1, "-blendv": 1, "-bm": 1, "-boost": 1, "-cc": 1, "-clamp": 1, "-imfchan": 1,
                "-mm": 2, "-texres": 1, "-type": 1, "-o": 3, "-s": 3, "-t": 3}
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?(?=\s|$)")


# glTF extensions a file may require that this reader honours: Draco geometry (decoded by trimesh
# through DracoPy), WebP textures (trimesh), specular-glossiness materials (trimesh), unlit
# materials (shading only: the base colour is read as usual).
GLTF_EXTENSIONS = {"KHR_draco_mesh_compression": "DracoPy", "EXT_texture_webp": None,
                   "KHR_materials_pbrSpecularGlossiness": None, "KHR_materials_unlit": None}


def _gltf_json(path: str) -> dict | None:
    """The JSON part of a .glb or .gltf (None if it cannot be read; the reader then says why)."""
    import json
    import struct

    try:
        with open(path, "rb") as fh:
            head = fh.read(20)
            if head[:4] == b"glTF":
                length, kind = struct.unpack("<I4s", head[12:20])
                return json.loads(fh.read(length)) if kind == b"JSON" else None
            return json.loads(head + fh.read())
    except (OSError, ValueError, struct.error):
        return None


def _check_gltf_extensions(path: str):
    """A glTF that requires an extension this reader does not decode (meshopt or Draco without
    DracoPy, quantized or Basis-compressed data) is one MeshFormatError naming the extension, not
    geometry read as placeholder zeros (three vertices at the origin)."""
    tree = _gltf_json(path)
    if not isinstance(tree, dict):
        return
    used = set(tree.get("extensionsRequired") or [])
    for m in tree.get("meshes") or []:  # a compressed primitive counts even if not declared required
        for prim in (m or {}).get("primitives") or []:
            used |= {e for e in ((prim or {}).get("extensions") or {}) if e.endswith("compression")}
    for ext in sorted(used):
        if ext not in GLTF_EXTENSIONS:
            raise MeshFormatError(f"{path}: requires the glTF extension {ext}, which this reader cannot decode; "
                                  "re-export it without (e.g. Blender's glTF export with compression off)")
        module = GLTF_EXTENSIONS[ext]
        if module:
            import importlib.util

            if importlib.util.find_spec(module) is None:
                raise MeshFormatError(f"{path}: compressed with the glTF extension {ext}; pip install {module} "
                                      "to read it, or re-export it uncompressed")
    if "KHR_draco_mesh_compression" in used:
        _check_draco(path, tree)


def _gltf_buffer(path: str, tree: dict, index: int) -> bytes | None:
    """Buffer ``index`` of a glTF: a .glb's BIN chunk (buffer 0 without a uri) or a .bin file beside
    it; None where it cannot be had here (a data URI, a missing file: the reader says why)."""
    import struct

    buf = (tree.get("buffers") or [{}])[index] if index < len(tree.get("buffers") or []) else {}
    uri = buf.get("uri")
    try:
        if uri is None:
            with open(path, "rb") as fh:
                data = fh.read()
            if data[:4] != b"glTF":
                return None
            json_len = struct.unpack_from("<I", data, 12)[0]
            off = 20 + json_len
            if off + 8 > len(data):
                return b""
            bin_len = struct.unpack_from("<I", data, off)[0]
            return data[off + 8:off + 8 + bin_len]
        if uri.startswith("data:"):
            return None
        from urllib.parse import unquote

        with open(os.path.join(os.path.dirname(path), unquote(uri)), "rb") as fh:
            return fh.read()
    except (OSError, struct.error):
        return None


def _check_draco(path: str, tree: dict):
    """Every Draco-compressed primitive must decode: trimesh reads a Draco buffer that does not
    (damaged, truncated) as placeholder zeros, which later looks like a mesh of zero extent."""
    import DracoPy

    views = tree.get("bufferViews") or []
    for mi, m in enumerate(tree.get("meshes") or []):
        for pi, prim in enumerate((m or {}).get("primitives") or []):
            ext = ((prim or {}).get("extensions") or {}).get("KHR_draco_mesh_compression")
            if not isinstance(ext, dict):
                continue
            where = f"mesh {mi} ('{m.get('name', '')}') primitive {pi}"
            try:
                view = views[ext["bufferView"]]
                buf = _gltf_buffer(path, tree, view.get("buffer", 0))
                start = view.get("byteOffset", 0)
                blob = None if buf is None else buf[start:start + view["byteLength"]]
            except (KeyError, IndexError, TypeError):
                raise MeshFormatError(f"{path}: the Draco data of {where} names no valid bufferView") from None
            if blob is None:
                continue
            if len(blob) < view["byteLength"]:
                raise MeshFormatError(f"{path}: the Draco data of {where} is cut short ({len(blob)} of "
                                      f"{view['byteLength']} bytes): a truncated file")
            try:
                DracoPy.decode(blob)
            except Exception as e:  # DracoPy raises its own FileTypeException and others
                raise MeshFormatError(f"{path}: the Draco-compressed geometry of {where} does not decode "
                                      f"({type(e).__name__}: {str(e)[:80]}); the file is damaged") from None


def mesh_files(path: str) -> list:
    """Every file a mesh output at ``path`` consists of: an .obj's texture and .mtl beside it
    (``Mesh.save_obj`` writes them under these names), then the mesh itself."""
    base, ext = os.path.splitext(path)
    return ([base + "_albedo.png", base + ".mtl"] if ext.lower() == ".obj" else []) + [path]


def split_texture_reference(text: str) -> tuple[str, dict]:
    """Split an MTL texture statement's argument into the file name and its options:
    ``-s 2 2 1 -o 0.5 0 fuze uv.jpg`` -> ("fuze uv.jpg", {"-s": [2, 2, 1], "-o": [0.5, 0]}).
    The name is the rest of the statement, spaces included (MeshLab writes such names)."""
    rest, opts = text.strip(), {}
    while True:
        m = re.match(r"(-[A-Za-z]+)\s+", rest)
        if not m or m.group(1).lower() not in _MTL_OPTIONS:
            break
        name, rest = m.group(1).lower(), rest[m.end():]
        if name in ("-o", "-s", "-t"):  # one to three numbers
            values = []
            while len(values) < 3 and (n := _NUMBER.match(rest)):
                values.append(float(n.group(0)))
                rest = rest[n.end():].lstrip()
            opts[name] = values
        else:
            parts = rest.split(None, _MTL_OPTIONS[name])
            opts[name], rest = parts[:-1], (parts[-1] if len(parts) > _MTL_OPTIONS[name] else "")
    return rest.strip().strip('"'), opts


def _resolver_class():
    from trimesh.resolvers import FilePathResolver

    class Resolver(FilePathResolver):
        """Finds the files a mesh refers to (material libraries, textures, glTF buffers) as
        exporters write them: MTL options before the name, spaces in it, backslashes, absolute
        paths from another machine (then the file beside the mesh), other letter case, %-escapes."""

        def __init__(self, path):
            super().__init__(path)
            self.folder = os.path.dirname(os.path.abspath(path))
            self.missing = []  # references that no file answers
            self.served = {}  # reference as written -> (file, options)

        def find(self, ref: str):
            from urllib.parse import unquote

            ref = ref.replace("\\", "/")
            names = [ref, unquote(ref)]
            cands = [n if os.path.isabs(n) else os.path.join(self.folder, n) for n in names]
            cands += [os.path.join(self.folder, os.path.basename(n)) for n in names]
            for c in cands:
                if os.path.isfile(c):
                    return c
            lower = {n.lower(): n for n in os.listdir(self.folder)}
            for n in names:
                hit = lower.get(os.path.basename(n).lower())
                if hit:
                    return os.path.join(self.folder, hit)
            return None

        def get(self, name):
            ref, opts = split_texture_reference(name)
            found = self.find(ref) if ref else None
            if found is None:
                self.missing.append(ref or name)
                raise FileNotFoundError(ref or name)
            self.served[name] = (found, opts)
            with open(found, "rb") as fh:
                return fh.read()

    return Resolver


_NONFINITE = re.compile(rb"^[ \t]*(v|vt|vn)[ \t][^\n]*?(?<![\w.])[-+]?(nan|inf|infinity)(?![\w.])", re.I | re.M)


def _check_obj_numbers(path: str, data: bytes) -> int:
    """OBJ readers turn a NaN colour into an arbitrary byte silently: refuse non-finite numbers.
    Returns the number of line elements (``l``), which readers drop, for the error on no faces."""
    m = _NONFINITE.search(data)
    if m is None:
        return len(re.findall(rb"^[ \t]*l[ \t]", data, re.M))
    line_no = data.count(b"\n", 0, m.start()) + 1
    line = data[m.start():data.find(b"\n", m.start()) if b"\n" in data[m.start():] else len(data)]
    tokens = line.split()
    tag = tokens[0].decode()
    bad = next(i for i, t in enumerate(tokens[1:], 1) if not np.isfinite(float(t)))
    what = {"vt": "texture coordinate", "vn": "normal"}.get(tag, "vertex position" if bad <= 3 else "vertex colour")
    raise MeshFormatError(f"{path}: line {line_no}: {what} is NaN or inf ({line.decode(errors='replace').strip()[:60]}); "
                          f"fix or remove it")


def _srgb_to_linear(c):
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c):
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(np.clip(c, 0, None), 1 / 2.4) - 0.055)


def _image_array(img, max_side: int | None = None) -> np.ndarray:
    """A PIL image -> [H, W, 3] float32 in [0, 1] (alpha dropped), longest side at most ``max_side``."""
    from PIL import Image

    img = img.convert("RGB")
    if max_side and max(img.size) > max_side:
        s = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.LANCZOS)
    return np.asarray(img, np.float32) / 255.0


def _repeat_to_unit(uv: np.ndarray, image: np.ndarray, max_side: int):
    """UVs beyond [0, 1] repeat the texture (OBJ and glTF's default): tile the image over the
    UVs' integer range and map them into [0, 1], which is exact for every face, unlike wrapping
    each vertex. The tiled image keeps its longest side within ``max_side``."""
    eps = 1e-4
    lo = np.floor(uv.min(0) + eps)
    reps = np.maximum(np.ceil(uv.max(0) - eps) - lo, 1).astype(int)  # tiles along u, v
    if (lo == 0).all() and (reps == 1).all():
        return uv, image
    h, w = image.shape[:2]
    scale = min(1.0, max_side / (w * reps[0]), max_side / (h * reps[1]))
    if scale < 1:
        import cv2

        image = cv2.resize(image, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    return (uv - lo) / reps, np.tile(image, (reps[1], reps[0], 1))


def _is_trimesh_default(material) -> bool:
    """trimesh gives UVs without a material its own grey placeholder: that is no colour of the file's."""
    from trimesh.visual.material import empty_material

    return hash(material) == hash(empty_material())


def _part(g, resolver, max_texture: int) -> dict:
    """One trimesh geometry -> positions, faces, and its colour: a texture (uv + image), vertex
    colours (material colour, vertex or face colours), or nothing (vc None and image None)."""
    import trimesh

    v = np.asarray(g.vertices, np.float32)
    f = np.asarray(g.faces, np.int64)
    p = {"v": v, "f": f, "uv": None, "image": None, "vc": None, "kind": "none"}
    vis = g.visual
    if isinstance(vis, trimesh.visual.TextureVisuals):
        mat = vis.material
        uv = None if vis.uv is None or len(vis.uv) != len(v) else np.asarray(vis.uv, np.float64)
        if mat is None or _is_trimesh_default(mat):
            return p
        if isinstance(mat, trimesh.visual.material.PBRMaterial):
            img, factor = mat.baseColorTexture, mat.baseColorFactor
            factor = None if factor is None else np.asarray(factor, np.float64)[:3] / (255.0 if np.asarray(
                factor).dtype == np.uint8 else 1.0)
            colour = None if factor is None else _linear_to_srgb(factor)  # glTF factors are linear
        else:
            img, factor = mat.image, None
            colour = None if mat.diffuse is None else np.asarray(mat.diffuse, np.float64)[:3] / 255.0
        if img is not None and uv is not None:
            ref = getattr(img, "info", {}).get("file_path")
            opts = resolver.served.get(ref, (None, {}))[1] if ref else {}
            if "-s" in opts or "-o" in opts:  # texture scale and offset, as Blender's OBJ importer applies them
                s = (opts.get("-s", []) + [1.0, 1.0])[:2]
                o = (opts.get("-o", []) + [0.0, 0.0])[:2]
                uv = uv * np.asarray(s) + np.asarray(o)
            image = _image_array(img)
            if factor is not None and not np.allclose(factor, 1):  # glTF: texel (linear) x factor
                image = _linear_to_srgb(_srgb_to_linear(image) * factor).astype(np.float32)
            p["uv"], p["image"] = _repeat_to_unit(uv, image, max_texture)
            p["kind"] = "texture"
        elif colour is not None:
            p["vc"], p["kind"] = np.tile(colour.astype(np.float32), (len(v), 1)), "material colour"
    elif isinstance(vis, trimesh.visual.ColorVisuals):
        if vis.kind == "vertex":
            p["vc"], p["kind"] = np.asarray(vis.vertex_colors, np.float32)[:, :3] / 255.0, "vertex colours"
        elif vis.kind == "face":  # one colour per face: give each face its own corners
            fc = np.asarray(vis.face_colors, np.float32)[:, :3] / 255.0
            p["v"], p["f"] = v[f].reshape(-1, 3), np.arange(3 * len(f)).reshape(-1, 3)
            p["vc"], p["kind"] = np.repeat(fc, 3, axis=0), "face colours"
    return p


def _describe_empty(geoms, obj_lines: int = 0) -> str:
    import trimesh
    from trimesh.path.path import Path

    points = sum(len(g.vertices) for g in geoms if isinstance(g, (trimesh.PointCloud, Path)))
    lines = sum(len(g.entities) for g in geoms if isinstance(g, Path)) or obj_lines
    held = [f"{points} points" if points else "", f"{lines} lines" if lines else ""]
    held = " and ".join(h for h in held if h)
    return f"only {held}" if held else "nothing"


def read_mesh(path: str, max_texture: int = DEFAULT_MAX_TEXTURE) -> Mesh:
    """Read a mesh file with trimesh into one single-index ``Mesh``.

    Every part of the file is kept (objects, glTF nodes with their transforms, one part per
    material). Colour, in glTF's model (texture x vertex colour): one textured part keeps its
    texture; several are packed into one atlas (untextured parts point at a white tile and carry
    their colour as vertex colours); without any texture, material colours (Kd, baseColorFactor),
    vertex or face colours become vertex colours. A part with no colour at all is neutral grey,
    said in ``mesh.warnings``. Textures whose UVs repeat are tiled; every texture or atlas keeps
    its longest side within ``max_texture``. Anything unreadable is one ``MeshFormatError`` line
    naming the file.
    """
    import logging

    import trimesh

    require_file(path, "mesh file")
    name = os.path.basename(path)
    source, kind, obj_lines = path, None, 0
    if os.path.splitext(path)[1].lower() == ".obj":
        with open(path, "rb") as fh:
            data = fh.read()
        obj_lines = _check_obj_numbers(path, data)
        if b"\t" in data:  # the OBJ grammar separates by any white space; trimesh's reader by spaces only
            source, kind = io.BytesIO(data.replace(b"\t", b" ")), "obj"
    elif os.path.splitext(path)[1].lower() in (".glb", ".gltf"):
        _check_gltf_extensions(path)
    resolver = _resolver_class()(path)
    log = logging.getLogger("trimesh")
    level = log.level
    log.setLevel(logging.ERROR)  # we say what matters ourselves, in one line
    try:
        scene = trimesh.load(source, file_type=kind, process=False, force="scene", resolver=resolver)
        geoms = scene.dump()
    except IndexError as e:  # what the readers raise for an index past the end
        raise MeshFormatError(f"{path}: a face refers to a vertex or texture coordinate that does not exist "
                              f"({str(e)[:80]})") from None
    except Exception as e:
        raise MeshFormatError(f"{path}: cannot read mesh ({type(e).__name__}: {str(e)[:120]})") from None
    finally:
        log.setLevel(level)
    missing_textures = [m for m in resolver.missing if not m.lower().endswith(".mtl")]
    if missing_textures:
        raise MeshFormatError(f"{path}: texture '{missing_textures[0]}' not found (looked beside the mesh, in "
                              f"{resolver.folder}); copy it there or remove the map statement")
    materials = [getattr(getattr(g, "visual", None), "material", None) for g in geoms]
    used = {getattr(getattr(m, "image", None), "info", {}).get("file_path") for m in materials}  # decoded ones
    undecoded = [ref for ref, (file, _) in resolver.served.items()
                 if not file.lower().endswith(".mtl") and ref not in used and path.lower().endswith(".obj")]
    if undecoded:
        raise MeshFormatError(f"{path}: texture '{resolver.served[undecoded[0]][0]}' is not a readable image")
    meshes = [g for g in geoms if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    if not meshes:
        raise MeshFormatError(f"{path}: no faces to render: the file holds {_describe_empty(geoms, obj_lines)}; "
                              f"reconstruction needs a surface (triangles or polygons)")
    parts = [_part(g, resolver, max_texture) for g in meshes]
    warnings = []
    grey = [p for p in parts if p["kind"] == "none"]
    if grey:
        where = "" if len(grey) == len(parts) else f" in {len(grey)} of its {len(parts)} parts"
        lib = [m for m in resolver.missing if m.lower().endswith(".mtl")]
        why = f" (its material library '{lib[0]}' is missing)" if lib else ""
        warnings.append(f"{name}: no texture, material colour or vertex colours{where}{why}; "
                        f"rendered in neutral grey ({NEUTRAL_GREY})")
        for p in grey:
            p["vc"] = np.full((len(p["v"]), 3), NEUTRAL_GREY, np.float32)
    offsets = np.cumsum([0] + [len(p["v"]) for p in parts])[:-1]
    v = np.concatenate([p["v"] for p in parts])
    f = np.concatenate([p["f"] + o for p, o in zip(parts, offsets)])
    textured = [p for p in parts if p["image"] is not None]
    vt = albedo = None
    if len(textured) == 1 and len(parts) == 1:
        vt, albedo = parts[0]["uv"], parts[0]["image"]
    elif textured:  # one atlas for every part; untextured parts sample a white tile
        from PIL import Image
        from trimesh.visual.material import SimpleMaterial, pack

        white = np.ones((4, 4, 3), np.float32)
        mats = [SimpleMaterial(image=Image.fromarray((255 * (white if p["image"] is None else p["image"]) + 0.5)
                                                     .astype(np.uint8))) for p in parts]
        uvs = [p["uv"] if p["image"] is not None else np.full((len(p["v"]), 2), 0.5) for p in parts]
        mat, vt = pack(mats, uvs, max_tex_size_fused=max_texture)
        albedo = _image_array(mat.image)
    if albedo is not None and max(albedo.shape[:2]) > max_texture:
        from PIL import Image

        albedo = _image_array(Image.fromarray((albedo * 255 + 0.5).astype(np.uint8)), max_texture)
    has_vc = any(p["vc"] is not None for p in parts)
    vc = np.concatenate([np.ones((len(p["v"]), 3), np.float32) if p["vc"] is None else p["vc"] for p in parts]) \
        if has_vc else None
    if albedo is None:
        vt = None
    mesh = Mesh(v, f, None if vt is None else np.asarray(vt, np.float32), albedo, vc, warnings)
    mesh.sources = sorted({p["kind"] for p in parts})
    return mesh


def _check_finite(path: str, mesh: Mesh):
    for what, t in (("vertex positions", mesh.v), ("texture coordinates", mesh.vt), ("texture", mesh.albedo),
                    ("vertex colours", mesh.vc)):
        if t is not None and not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).reshape(t.shape[0], -1).any(1).sum())
            raise MeshFormatError(f"{path}: {bad} {what} row(s) hold NaN or inf values; fix or remove them")
