"""Differentiable mesh rendering: rasterize, interpolate, texture.

    out = render_mesh(mesh, camera, bg_color=(1, 1, 1), backend="auto", v_offsets=None)
    out["image"] [3,H,W], out["alpha"] [1,H,W], out["depth"] [1,H,W] (view depth, 0 outside),
    out["normal"] [3,H,W] (world-space, interpolated vertex normals), out["uv"] [H,W,2],
    out["face_id"] [H,W] (-1 outside), out["viewcos"] [H,W] (normal . direction to the camera)

Backends
  torch      pure PyTorch z-buffer rasterizer, CPU or GPU (``rasterize_torch``)
  nvdiffrast NVIDIA's rasterizer (CUDA), if installed
  auto       nvdiffrast on CUDA when installed, else torch

Gradients reach the texture (bilinear lookup) and, through perspective-correct barycentrics
recomputed for the visible faces, the vertex positions (``v_offsets`` for train_geo). Like
nvdiffrast without its antialias pass, silhouettes are hard: alpha has no gradient.
"""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import torch
import torch.nn.functional as F

from cameras import Camera

BACKENDS = ("auto", "torch", "nvdiffrast")


def to_clip(v: torch.Tensor, camera) -> torch.Tensor:
    """World positions [V,3] -> OpenGL clip coordinates [V,4] for ``camera``."""
    mvp = torch.as_tensor(camera.proj @ camera.w2c, dtype=v.dtype, device=v.device)
    return torch.cat([v, torch.ones_like(v[:, :1])], 1) @ mvp.T


def bary_weights(clip_f: torch.Tensor, ndc: torch.Tensor) -> torch.Tensor:
    """Perspective-correct barycentrics of NDC points ``ndc`` [M,2] in triangles ``clip_f`` [M,3,4]
    (unnormalised: the cross product of A_i = x_i - px w_i and B_i = y_i - py w_i)."""
    w = clip_f[..., 3]
    A = clip_f[..., 0] - ndc[:, :1] * w
    B = clip_f[..., 1] - ndc[:, 1:] * w
    return torch.cross(A, B, dim=-1)


def box_pixels(sx, sy, width, height, keep, max_pairs: int = 4_000_000):
    """Every (face, px, py) of the pixels in each face's bounding box whose centre lies within the
    box, for faces where ``keep``; ``sx``, ``sy`` [F,3] are the vertices in pixel-centre
    coordinates (pixel (px, py) has centre (px, py)). Yielded in groups of at most about
    ``max_pairs`` pairs."""
    x0 = torch.ceil(sx.amin(1)).clamp(0, width).long()
    x1 = torch.floor(sx.amax(1)).clamp(-1, width - 1).long()
    y0 = torch.ceil(sy.amin(1)).clamp(0, height).long()
    y1 = torch.floor(sy.amax(1)).clamp(-1, height - 1).long()
    nx = (x1 - x0 + 1).clamp_min(0) * keep
    ny = (y1 - y0 + 1).clamp_min(0) * keep
    n = nx * ny
    fids = torch.nonzero(n).flatten()
    if not fids.numel():
        return
    group_of = torch.div(torch.cumsum(n[fids], 0) - 1, max_pairs, rounding_mode="floor")
    for gi in torch.unique(group_of).tolist():
        sel = fids[group_of == gi]
        cnt = n[sel]
        fid = torch.repeat_interleave(sel, cnt)
        local = torch.arange(fid.shape[0], device=fid.device) - (torch.cumsum(cnt, 0) - cnt).repeat_interleave(cnt)
        yield fid, x0[fid] + local % nx[fid], y0[fid] + torch.div(local, nx[fid], rounding_mode="floor")


def rasterize_torch(clip: torch.Tensor, faces: torch.Tensor, height: int, width: int, max_pairs: int = 4_000_000):
    """Z-buffer rasterization in pure PyTorch.

    For every face with all vertices in front of the camera (w > 0), every pixel of its screen
    bounding box is tested with perspective-correct barycentrics; the nearest covering face
    (smallest interpolated w) wins. Pixel (i, j) has NDC centre ((j+.5)/W*2-1, 1-(i+.5)/H*2):
    row 0 is the top of the image. Returns face_id [H,W] (long, -1 = empty) and the winners'
    normalised barycentrics [H,W,3], differentiable w.r.t. ``clip``.
    """
    dev = clip.device
    HW = height * width
    with torch.no_grad():
        c = clip.detach()
        cf = c[faces]  # [F,3,4]
        front = (cf[..., 3] > 1e-6).all(1)
        sx = (cf[..., 0] / cf[..., 3].clamp_min(1e-6) + 1) * 0.5 * width - 0.5  # pixel-centre coordinates
        sy = (1 - cf[..., 1] / cf[..., 3].clamp_min(1e-6)) * 0.5 * height - 0.5
        zbuf = torch.full((HW,), float("inf"), dtype=c.dtype, device=dev)
        best = torch.full((HW,), -1, dtype=torch.long, device=dev)
        hits = []  # (face, pixel, depth) of every covered pair, gathered group by group
        for fid, px, py in box_pixels(sx, sy, width, height, front, max_pairs):
            ndc = torch.stack([(px + 0.5) / width * 2 - 1, 1 - (py + 0.5) / height * 2], -1).to(c.dtype)
            b = bary_weights(cf[fid], ndc)
            s = b.sum(-1)
            inside = (s.abs() > 1e-12) & ((b * s.sign()[:, None]) >= 0).all(-1)
            b = b[inside] / s[inside, None]
            fid, pix = fid[inside], (py * width + px)[inside]
            hits.append((fid, pix, (b * cf[fid, :, 3]).sum(-1)))
        if hits:
            fid, pix, depth = (torch.cat(t) for t in zip(*hits))
            zbuf.scatter_reduce_(0, pix, depth, reduce="amin")
            win = depth <= zbuf[pix]
            best.scatter_reduce_(0, pix[win], fid[win], reduce="amax")  # ties: highest face id
    face_id = best.reshape(height, width)
    bary = torch.zeros(HW, 3, dtype=clip.dtype, device=dev)
    pix = torch.nonzero(best >= 0).flatten()
    if pix.numel():
        py, px = torch.div(pix, width, rounding_mode="floor"), pix % width
        ndc = torch.stack([(px + 0.5) / width * 2 - 1, 1 - (py + 0.5) / height * 2], -1).to(clip.dtype)
        b = bary_weights(clip[faces[best[pix]]], ndc)  # with autograd, from the live clip coordinates
        bary = bary.index_put((pix,), b / b.sum(-1, keepdim=True))
    return face_id, bary.reshape(height, width, 3)


def interpolate(attr: torch.Tensor, faces: torch.Tensor, face_id: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    """Per-pixel attribute [H,W,C] from per-vertex ``attr`` [V,C] (zero where face_id < 0)."""
    fid = face_id.clamp_min(0)
    vals = attr[faces[fid]]  # [H,W,3,C]
    out = (bary[..., None] * vals).sum(-2)
    return out * (face_id >= 0)[..., None]


def sample_texture(albedo: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup of ``albedo`` [Ht,Wt,C] (row 0 = top = v 1) at ``uv`` [H,W,2] -> [H,W,C]."""
    uv = uv.to(albedo.dtype)
    grid = torch.stack([uv[..., 0] * 2 - 1, 1 - uv[..., 1] * 2], -1)[None]
    tex = albedo.permute(2, 0, 1)[None]
    return F.grid_sample(tex, grid, mode="bilinear", padding_mode="border", align_corners=False)[0].permute(1, 2, 0)


def backend_available(name: str) -> bool:
    if name == "torch":
        return True
    return torch.cuda.is_available() and importlib.util.find_spec("nvdiffrast") is not None


def resolve_backend(name: str, device) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown mesh renderer '{name}'; choose one of {', '.join(BACKENDS)}")
    is_cuda = torch.device(device).type == "cuda"
    if name == "auto":
        return "nvdiffrast" if is_cuda and backend_available("nvdiffrast") else "torch"
    if name == "nvdiffrast" and not (is_cuda and backend_available("nvdiffrast")):
        raise ValueError("mesh renderer 'nvdiffrast' is not available here (needs CUDA and "
                           "pip install git+https://github.com/NVlabs/nvdiffrast); or use mesh_renderer=torch")
    return name


_GLCTX = {}


def rasterize_nvdiffrast(clip, faces, height, width):
    import nvdiffrast.torch as dr

    dev = clip.device
    if dev not in _GLCTX:
        _GLCTX[dev] = dr.RasterizeCudaContext(device=dev)
    rast, _ = dr.rasterize(_GLCTX[dev], clip[None].float().contiguous(), faces.int().contiguous(), (height, width))
    rast = rast[0].flip(0)  # nvdiffrast's row 0 is the bottom
    face_id = rast[..., 3].long() - 1
    u, v = rast[..., 0], rast[..., 1]
    bary = torch.stack([u, v, 1 - u - v], -1) * (face_id >= 0)[..., None]
    return face_id, bary


def rasterize(v, faces, camera, backend="auto"):
    """Clip coordinates [V,4], face ids [H,W] and barycentrics [H,W,3] of ``v``/``faces`` seen
    from ``camera``, with the backend ``backend`` resolves to."""
    name = resolve_backend(backend, v.device)
    clip = to_clip(v, camera)
    fn = rasterize_nvdiffrast if name == "nvdiffrast" else rasterize_torch
    face_id, bary = fn(clip, faces, camera.height, camera.width)
    return clip, face_id, bary


def depth_alpha(mesh, camera, backend="auto"):
    """View depth [H,W] (0 outside) and coverage [H,W] bool: what visibility tests need, without
    the shading work of ``render_mesh``."""
    clip, face_id, bary = rasterize(mesh.v, mesh.f, camera, backend)
    return interpolate(clip[:, 3:4], mesh.f, face_id, bary)[..., 0], face_id >= 0


def render_mesh(mesh, camera, bg_color=(1.0, 1.0, 1.0), backend="auto", v_offsets=None, albedo=None,
                shading="albedo"):
    """Render ``mesh`` (mesh.Mesh) from ``camera`` (cameras.Camera).

    ``albedo`` overrides the mesh texture (e.g. a trainable tensor); ``v_offsets`` [V,3] is
    added to the vertices; ``shading``: "albedo" (texture x vertex colours, or white), "normal"
    (normal map).
    """
    name = resolve_backend(backend, mesh.device)
    v = mesh.v if v_offsets is None else mesh.v + v_offsets
    clip, face_id, bary = rasterize(v, mesh.f, camera, name)
    mask = (face_id >= 0)
    alpha = mask.to(v.dtype)[None]
    vn = mesh.vertex_normals(v)
    normal = F.normalize(interpolate(vn, mesh.f, face_id, bary), dim=-1)
    wpos = interpolate(v, mesh.f, face_id, bary)
    campos = torch.as_tensor(camera.campos, dtype=v.dtype, device=v.device)
    viewdir = F.normalize(campos - wpos, dim=-1)
    viewcos = (normal * viewdir).sum(-1) * mask
    depth = interpolate(clip[:, 3:4], mesh.f, face_id, bary)[..., 0]
    uv = interpolate(mesh.vt, mesh.f, face_id, bary) if mesh.vt is not None else None
    tex = albedo if albedo is not None else mesh.albedo
    if shading == "normal":
        color = normal * 0.5 + 0.5
    else:  # glTF's model: texture x vertex colour, either one alone, or white
        color = sample_texture(tex, uv) if tex is not None and uv is not None else torch.ones_like(normal)
        if mesh.vc is not None:
            color = color * interpolate(mesh.vc, mesh.f, face_id, bary)
    bg = torch.as_tensor(bg_color, dtype=v.dtype, device=v.device)
    image = torch.where(mask[..., None], color, bg)
    return {"image": image.permute(2, 0, 1), "alpha": alpha, "depth": depth[None], "normal": normal.permute(2, 0, 1),
            "uv": uv, "face_id": face_id, "viewcos": viewcos, "backend": name}


def turntable(mesh, frames=60, size=512, elevation=-15.0, fovy=49.1, margin=1.2, backend="auto"):
    """Frames [N,H,W,3] uint8 around the mesh's bounding sphere."""
    lo, hi = mesh.bounds()
    center = (lo + hi) / 2
    radius = float((hi - lo).norm()) / 2
    dist = margin * radius / math.sin(math.radians(fovy) / 2)
    m = type(mesh)(mesh.v - center, mesh.f, mesh.vt, mesh.albedo, mesh.vc)
    out = []
    with torch.no_grad():
        for i in range(frames):
            cam = Camera.orbit(elevation, 360.0 * i / frames, dist, fovy, size)
            img = render_mesh(m, cam, (1.0, 1.0, 1.0), backend)["image"]
            out.append((img.permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))
    return np.stack(out)
