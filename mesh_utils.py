"""From 3D Gaussians to a textured mesh.

1. ``density_grid``: d(x) = sum_i o_i exp(-1/2 (x - mu_i)^T Sigma_i^-1 (x - mu_i)) on a grid over
   the bounding cube, block-wise: each Gaussian is paired only with the blocks its
   ``sigma_cut``-sigma box (plus margin) reaches, and each (block, Gaussian) pair evaluates the
   block's samples as one matmul of per-pair quadratic-form coefficients with the block's
   monomials (1, x, y, z, x^2, ..., yz). Contributions beyond ``sigma_cut`` are dropped, so the
   result equals the sum over every Gaussian with the same cut-off (up to rounding; tests/oracles.py).
2. ``fill_interior`` (optional, ``mc_close_radius``): the empty space inside the object becomes
   solid. SDS and the input-view losses shape only what the cameras see, so the Gaussians form
   a shell, hollow inside, cracked here and there; marching cubes then meshes the hollows as
   inner walls joined to the outside by the cracks (on one measured toy run, 17 % of the mesh's
   area lay inside the object: BENCHMARKS.md, *The hollow inside*). The occupancy is closed with
   a ball (sealing cracks narrower than its diameter) and every empty region the outside cannot
   reach is filled.
3. ``marching_cubes`` (PyMCubes) at ``density_thresh``, then ``clean_mesh`` (merge close vertices,
   drop degenerate faces and small floating components) and ``decimate`` (quadric decimation,
   fast-simplification via trimesh).
4. ``uv_atlas.unwrap_uv``: charts from the surface normals packed by xatlas, or xatlas whole
   (``uv_unwrap``).
5. ``bake_texture``: colour back-projection from renders of the Gaussians. Every texel is
   located on the surface (rasterizing the mesh in UV space), projected into each view, kept
   where the mesh is visible there (depth test) and faces the camera (normal . view >
   ``grazing_cos``; the reference's 0.5). ``blend="first"`` (the reference) gives each texel the
   colour of the first view that sees it; ``"weighted"`` averages every view with weight
   (normal . view). Texels no view saw take the colour of the nearest seen texel, so no black
   seams remain.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from mesh import Mesh
from uv_atlas import unwrap_uv


class NoSurfaceError(ValueError):
    """The density field has no surface at the requested threshold."""


# --------------------------------------------------------------- density query
def activated_gaussians(gaussians, min_opacity):
    """Means, 3D covariances, opacities and scales of the Gaussians above ``min_opacity``."""
    op = gaussians.opacities.detach()
    keep = op > min_opacity
    if not keep.any():
        raise NoSurfaceError(f"no Gaussian has opacity above {min_opacity}: nothing to mesh")
    from gs_renderer import covariance_3d

    cov = covariance_3d(gaussians.scales.detach()[keep], gaussians.quats.detach()[keep])
    return gaussians.means.detach()[keep], cov, op[keep], gaussians.scales.detach()[keep]


def grid_bounds(means: torch.Tensor, padding: float = 0.1):
    """A cube around the Gaussian centres: (centre [3], half size), with relative ``padding``."""
    lo, hi = means.amin(0), means.amax(0)
    centre = (lo + hi) / 2
    half = float((hi - lo).amax()) / 2 * (1 + padding)
    return centre, max(half, 1e-3)


def _quadratic_coefs(means_local, cov, opacity):
    """log(o) - 1/2 (x-m)^T P (x-m) as coefficients of (1, x, y, z, xx, yy, zz, xy, xz, yz)."""
    P = torch.linalg.inv(cov)
    m = means_local
    Pm = (P @ m[..., None])[..., 0]
    c0 = torch.log(opacity) - 0.5 * (m * Pm).sum(-1)
    return torch.stack([c0, Pm[..., 0], Pm[..., 1], Pm[..., 2],
                        -0.5 * P[..., 0, 0], -0.5 * P[..., 1, 1], -0.5 * P[..., 2, 2],
                        -P[..., 0, 1], -P[..., 0, 2], -P[..., 1, 2]], -1)


def _monomials(pts):
    x, y, z = pts.unbind(-1)
    return torch.stack([torch.ones_like(x), x, y, z, x * x, y * y, z * z, x * y, x * z, y * z], -1)


@torch.no_grad()
def density_grid(gaussians, resolution=128, num_blocks=16, padding=0.1, sigma_cut=3.0, margin=0.0,
                 min_opacity=0.005, pair_chunk=8192):
    """Density on a ``resolution``^3 grid over the Gaussians' bounding cube, block-wise.

    Returns (density [R,R,R] indexed [x, y, z], centre [3], half size): sample (i, j, k) sits at
    centre + half * (-1 + 2 * (i, j, k) / (R - 1)).
    """
    if resolution % num_blocks:
        raise ValueError(f"resolution {resolution} must be a multiple of num_blocks {num_blocks}")
    means, cov, op, scales = activated_gaussians(gaussians, min_opacity)
    centre, half = grid_bounds(means, padding)
    R, B = resolution, num_blocks
    S = R // B  # samples per block side
    step = 2 * half / (R - 1)
    dev = means.device
    # per-Gaussian reach: sigma_cut standard deviations along each axis (+ margin)
    reach = sigma_cut * torch.sqrt(torch.diagonal(cov, dim1=1, dim2=2)) + margin
    lo = torch.floor(((means - reach) - (centre - half)) / step).long()  # sample index range
    hi = torch.ceil(((means + reach) - (centre - half)) / step).long()
    b0 = torch.div(lo.clamp(0, R - 1), S, rounding_mode="floor")
    b1 = torch.div(hi.clamp(0, R - 1), S, rounding_mode="floor")
    outside = ((hi < 0) | (lo > R - 1)).any(1)
    nb = (b1 - b0 + 1) * (~outside)[:, None]
    n = nb.prod(1)
    gid = torch.repeat_interleave(torch.arange(means.shape[0], device=dev), n)
    local = torch.arange(gid.shape[0], device=dev) - (torch.cumsum(n, 0) - n)[gid]
    nbg = nb[gid]
    bx = b0[gid, 0] + local % nbg[:, 0]
    by = b0[gid, 1] + torch.div(local, nbg[:, 0], rounding_mode="floor") % nbg[:, 1]
    bz = b0[gid, 2] + torch.div(local, nbg[:, 0] * nbg[:, 1], rounding_mode="floor")
    block = (bx * B + by) * B + bz
    # block-local sample coordinates (relative to each block's centre, for precision)
    ar = (torch.arange(S, device=dev, dtype=means.dtype) - (S - 1) / 2) * step
    gx, gy, gz = torch.meshgrid(ar, ar, ar, indexing="ij")
    mono = _monomials(torch.stack([gx, gy, gz], -1).reshape(-1, 3)).T  # [10, S^3]
    thr = torch.log(op) - 0.5 * sigma_cut ** 2  # log-density floor of each Gaussian's cut-off
    out = torch.zeros(B * B * B, S ** 3, dtype=means.dtype, device=dev)
    for s in range(0, gid.shape[0], pair_chunk):
        g, blk = gid[s:s + pair_chunk], block[s:s + pair_chunk]
        bidx = torch.stack([torch.div(blk, B * B, rounding_mode="floor"),
                            torch.div(blk, B, rounding_mode="floor") % B, blk % B], -1)
        bcentre = centre - half + (bidx * S + (S - 1) / 2).to(means.dtype) * step
        logd = _quadratic_coefs(means[g] - bcentre, cov[g], op[g]) @ mono  # [M, S^3]
        val = torch.where(logd >= thr[g, None], torch.exp(logd), torch.zeros_like(logd))
        out.index_add_(0, blk, val)
    grid = out.reshape(B, B, B, S, S, S).permute(0, 3, 1, 4, 2, 5).reshape(R, R, R)
    return grid, centre, half


def close_with_ball(occ: np.ndarray, radius: int) -> np.ndarray:
    """Morphological closing of the boolean grid ``occ`` with the Euclidean ball of ``radius``
    cells (x^2 + y^2 + z^2 <= radius^2), by two distance transforms (O(cells) for any radius; the
    same as scipy.ndimage.binary_closing with that ball, tests/test_mesh.py). ``occ`` must be empty
    within ``radius`` + 1 cells of its border."""
    from scipy import ndimage

    dilated = ndimage.distance_transform_edt(~occ) <= radius
    return ndimage.distance_transform_edt(dilated) > radius


def fill_interior(grid: torch.Tensor, thresh: float, radius: int):
    """Make solid the empty space of ``grid`` that the outside cannot reach through gaps wider than
    a ball of ``radius`` cells: the occupancy ``grid > thresh`` is closed with that ball (dilated,
    then eroded), every empty region of the closed occupancy not connected to the grid's border is
    filled, and the cells so added (also those the closing added: cracks, and concave creases
    narrower than the ball) take the density ``2 * thresh`` where theirs is lower. Returns (grid,
    number of cells added). ``radius`` 0: only fully enclosed cavities are filled."""
    from scipy import ndimage

    occ = (grid > thresh).cpu().numpy()
    pad = radius + 1  # empty margin: the closing's dilation must not meet the grid's border
    closed = np.pad(occ, pad)
    if radius > 0:
        closed = close_with_ball(closed, radius)
    solid = ndimage.binary_fill_holes(closed)[pad:-pad, pad:-pad, pad:-pad]
    add = torch.from_numpy(solid & ~occ).to(grid.device)
    out = grid.clone()
    out[add] = torch.clamp(out[add], min=2.0 * thresh)
    return out, int(add.sum())


# ------------------------------------------------------------ surface extraction
def marching_cubes(grid: torch.Tensor, centre, half, thresh: float):
    import mcubes

    g = grid.detach().cpu().numpy().astype(np.float64)
    if not np.isfinite(g).all():
        raise NoSurfaceError("density field contains NaN or inf (are the Gaussians finite?)")
    lo_v, hi_v = float(g.min()), float(g.max())
    if not lo_v < thresh < hi_v:
        raise NoSurfaceError(f"no surface at density_thresh={thresh}: the density ranges over "
                             f"[{lo_v:.3g}, {hi_v:.3g}]; try a threshold inside it (e.g. {0.5 * hi_v:.3g})")
    # pad with empty space so that the surface is closed at the grid boundary
    g = np.pad(g, 1, constant_values=min(lo_v, thresh - 1.0))
    verts, faces = mcubes.marching_cubes(g, thresh)
    R = grid.shape[0]
    verts = (verts - 1) / (R - 1) * 2 - 1
    verts = verts * half + centre.detach().cpu().numpy()
    return verts.astype(np.float32), faces.astype(np.int64)


def clean_mesh(verts, faces, min_component_ratio=0.01, remove_cavities=True, merge_digits=6):
    """Merge close vertices (rounded to ``merge_digits`` decimals), drop degenerate and duplicate
    faces, orient faces outward, drop cavities (closed components facing inward, e.g. the inner
    wall of a shell of Gaussians) and components smaller than ``min_component_ratio`` of the
    largest one (by face count)."""
    import trimesh

    m = trimesh.Trimesh(verts, faces, process=False)
    m.merge_vertices(digits_vertex=merge_digits)
    m.update_faces(m.nondegenerate_faces(height=1e-12))
    m.update_faces(m.unique_faces())
    m.remove_unreferenced_vertices()
    if len(m.faces) == 0:
        raise NoSurfaceError("the extracted surface has no valid faces after cleanup")
    parts = m.split(only_watertight=False)
    biggest = max(parts, key=lambda p: len(p.faces))
    # marching cubes orients every face the same way relative to the density gradient: if the
    # largest closed component faces inward, all of them do
    flip = biggest.is_watertight and biggest.volume < 0
    keep = []
    for p in parts:
        if flip:
            p.invert()
        if len(p.faces) < min_component_ratio * len(biggest.faces):
            continue
        if remove_cavities and p is not biggest and p.is_watertight and p.volume < 0:
            continue
        keep.append(p)
    m = trimesh.util.concatenate(keep) if len(keep) > 1 else keep[0]
    return np.asarray(m.vertices, np.float32), np.asarray(m.faces, np.int64)


def decimate(verts, faces, target_faces: int):
    """Quadric edge-collapse decimation to about ``target_faces`` (fast-simplification)."""
    if target_faces <= 0 or len(faces) <= target_faces:
        return verts, faces
    import fast_simplification

    v, f = fast_simplification.simplify(verts.astype(np.float32), faces.astype(np.int32),
                                        target_reduction=1 - target_faces / len(faces))
    return np.asarray(v, np.float32), np.asarray(f, np.int64)


# --------------------------------------------------------------- back-projection
def texel_surface(mesh: Mesh, size: int):
    """Rasterize ``mesh`` in UV space: per-texel face id [S,S] and 3D position / normal [S,S,3]."""
    from mesh_renderer import interpolate, rasterize_torch

    uv = mesh.vt
    clip = torch.cat([uv * 2 - 1, torch.zeros_like(uv[:, :1]), torch.ones_like(uv[:, :1])], 1)
    face_id, bary = rasterize_torch(clip, mesh.f, size, size)
    pos = interpolate(mesh.v, mesh.f, face_id, bary)
    nrm = torch.nn.functional.normalize(interpolate(mesh.vertex_normals(), mesh.f, face_id, bary), dim=-1)
    return face_id, pos, nrm


def fill_unseen(tex: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Give every texel not in ``seen`` the colour of the nearest seen texel."""
    from scipy.ndimage import distance_transform_edt

    if seen.all() or not seen.any():
        return tex
    _, (iy, ix) = distance_transform_edt(~seen, return_indices=True)
    return tex[iy, ix]


@torch.no_grad()
def bake_texture(mesh: Mesh, views, texture_size=1024, grazing_cos=0.5, depth_tol=0.01, alpha_min=0.5,
                 mesh_backend="torch", blend="first"):
    """Back-project coloured views onto ``mesh``'s UV texture.

    ``views``: iterable of (camera, image [3,H,W], alpha [1,H,W]) — e.g. renders of the Gaussians,
    in priority order for ``blend="first"``. Returns (albedo [S,S,3] tensor, fraction of surface
    texels seen by some view).
    """
    if blend not in ("first", "weighted"):
        raise ValueError(f"bake_blend must be first or weighted, got '{blend}'")
    from mesh_renderer import depth_alpha

    face_id, pos, nrm = texel_surface(mesh, texture_size)
    on_surface = face_id >= 0
    pts, nrm_s = pos[on_surface], nrm[on_surface]
    acc = torch.zeros(pts.shape[0], 3)
    wsum = torch.zeros(pts.shape[0])
    for cam, image, alpha in views:
        depth, covered = depth_alpha(mesh, cam, mesh_backend)
        vm, K = cam.tensors()
        pc = pts @ vm[:3, :3].T + vm[:3, 3]
        z = pc[:, 2].clamp_min(1e-6)
        u = K[0, 0] * pc[:, 0] / z + K[0, 2]
        v = K[1, 1] * pc[:, 1] / z + K[1, 2]
        W, H = cam.width, cam.height
        inb = (pc[:, 2] > 1e-6) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
        ui, vi = u.long().clamp(0, W - 1), v.long().clamp(0, H - 1)
        zbuf = depth[vi, ui]
        visible = inb & covered[vi, ui] & ((z - zbuf).abs() <= depth_tol * zbuf)
        dirs = torch.nn.functional.normalize(torch.as_tensor(cam.campos) - pts, dim=-1)
        cos = (nrm_s * dirs).sum(-1)
        grid = torch.stack([u / W * 2 - 1, v / H * 2 - 1], -1)[None, None]
        rgb = torch.nn.functional.grid_sample(image[None].float(), grid, align_corners=False)[0, :, 0].T
        a = torch.nn.functional.grid_sample(alpha[None].float(), grid, align_corners=False)[0, 0, 0]
        ok = visible & (cos > grazing_cos) & (a > alpha_min)
        w = cos * ok if blend == "weighted" else (ok & (wsum == 0)).float()  # first: unseen texels only
        acc += rgb * w[:, None]
        wsum += w
    seen_pts = wsum > 0
    tex = torch.zeros(texture_size, texture_size, 3)
    vals = torch.where(seen_pts[:, None], acc / wsum.clamp_min(1e-8)[:, None], torch.zeros_like(acc))
    tex[on_surface] = vals
    seen = torch.zeros(texture_size, texture_size, dtype=torch.bool)
    seen[on_surface] = seen_pts
    coverage = float(seen_pts.float().mean()) if seen_pts.numel() else 0.0
    filled = fill_unseen(tex.numpy(), seen.numpy())
    return torch.from_numpy(np.ascontiguousarray(filled)), coverage


def bake_azimuths(n: int) -> list:
    """``n`` azimuths 360/n apart, outward from the front: 0, +d, -d, +2d, -2d, ... (the
    reference's order for 8: 0, 45, -45, 90, -90, 135, -135, 180)."""
    d = 360.0 / n
    out, k = [0.0], 1
    while len(out) < n:
        out.append(k * d)
        if len(out) < n and k * d != 180.0:
            out.append(-k * d)
        k += 1
    return out


def bake_views(num_azimuth=8, elevations=(0.0, -45.0, 45.0), top_bottom=True):
    """The reference's bake views, in its order: for each elevation in turn the azimuths of
    ``bake_azimuths``, then straight above and below (el -89.9 / 89.9)."""
    views = [(float(el), az) for el in elevations for az in bake_azimuths(num_azimuth)]
    if top_bottom:
        views += [(-89.9, 0.0), (89.9, 0.0)]
    return views


def gaussians_to_mesh(gaussians, cfg, render_fn, log=print):
    """The whole export: density grid, marching cubes, cleanup, decimation, unwrap, bake.

    ``cfg`` holds the mesh keys (see configs/*.yaml); ``render_fn(camera) -> (image, alpha)``
    renders the Gaussians. Returns (Mesh, timings dict, stats dict).
    """
    from cameras import Camera

    t, times = time.perf_counter(), {}

    def lap(name):
        nonlocal t
        now = time.perf_counter()
        times[name] = round(now - t, 3)
        t = now

    grid, centre, half = density_grid(gaussians, cfg.mc_resolution, cfg.mc_num_blocks, cfg.mc_padding,
                                      cfg.mc_sigma_cut, cfg.mc_margin, cfg.mc_min_opacity)
    lap("density_query")
    filled = 0
    if cfg.mc_close_radius > 0:
        radius = max(1, int(round(cfg.mc_close_radius * (cfg.mc_resolution - 1))))
        grid, filled = fill_interior(grid, cfg.density_thresh, radius)
        lap("fill_interior")
    verts, faces = marching_cubes(grid, centre, half, cfg.density_thresh)
    lap("marching_cubes")
    verts, faces = clean_mesh(verts, faces, cfg.min_component_ratio, cfg.remove_cavities)
    verts, faces = decimate(verts, faces, cfg.decimate_target)
    lap("cleanup_decimate")
    verts, faces, uvs = unwrap_uv(verts, faces, cfg.texture_size, method=cfg.uv_unwrap)
    lap("uv_unwrap")
    mesh = Mesh(torch.from_numpy(verts), torch.from_numpy(faces), torch.from_numpy(uvs))
    cams = [Camera.orbit(el, az, cfg.radius, cfg.fovy, cfg.bake_resolution)
            for el, az in bake_views(cfg.bake_num_azimuth, tuple(cfg.bake_elevations), cfg.bake_top_bottom)]
    views = ((c, *render_fn(c)) for c in cams)
    albedo, coverage = bake_texture(mesh, views, cfg.texture_size, cfg.bake_grazing_cos,
                                    mesh_backend=cfg.mesh_renderer, blend=cfg.bake_blend)
    mesh.albedo = albedo
    lap("back_projection")
    stats = {"vertices": int(mesh.v.shape[0]), "faces": int(mesh.f.shape[0]), "texel_coverage": round(coverage, 4),
             "filled_cells": filled}
    log(f"mesh: {stats['faces']} faces, {stats['vertices']} vertices, {100 * coverage:.1f}% of texels seen; "
        f"times {times}")
    return mesh, times, stats


def mesh_from_file(ply: str, cfg):
    """The mesh export of ``cfg``'s mesh keys on the Gaussians saved in ``ply``, without training
    (their renders on white for the back-projection, as stage 1 bakes). Returns (mesh, timings,
    stats) of ``gaussians_to_mesh``."""
    from gaussians import GaussianModel
    from gs_renderer import render

    g = GaussianModel.load(ply)

    def render_fn(cam):
        with torch.no_grad():
            o = render(g, cam, (1.0, 1.0, 1.0), cfg.rasterizer, cfg.tile_size, cfg.chunk_size)
        return o["image"], o["alpha"]

    return gaussians_to_mesh(g, cfg, render_fn, log=lambda *a: None)
