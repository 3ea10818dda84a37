"""Differentiable 3D Gaussian splatting: one function of (Gaussians, camera), several backends.

    out = render(gaussians, camera, bg_color, backend="auto")
    out["image"] [3,H,W] clamped to [0,1] (as the reference), out["alpha"] [1,H,W],
    out["depth"] [1,H,W] (alpha-weighted view depth), out["radii"] [N] (pixels, 0 = not drawn),
    out["visibility"] [N] bool, out["means2d"] whose .grad feeds densification: [N,2] pixel
    positions, or for inria its [N,3] screen tensor with NDC gradients (out["means2d_ndc"] True).

Backends
  torch  pure PyTorch, CPU or GPU: tiled front-to-back compositing (see ``rasterize_tiles``)
  gsplat gsplat.rasterization (CUDA only)
  inria  diff_gaussian_rasterization (CUDA only, if the user built it)
  auto   a CUDA backend when the tensors are on CUDA and one is installed, else torch

Image model shared by every pure-PyTorch path (and matched by the CUDA ones to within their
own tile-granularity cut-offs): a Gaussian contributes to a pixel when its Mahalanobis
distance is at most 3 and its alpha ``o * exp(-d^2/2)`` is at least 1/255; alpha is clamped
to 0.99; compositing front to back stops at a pixel once the transmittance after a Gaussian
would fall below 1e-4 (that Gaussian and all behind it are dropped). Because the cut-off is an
ellipse and not a tile box, the torch image does not depend on the tile size.
"""
from __future__ import annotations

import importlib.util
import math

import torch

ALPHA_MIN = 1.0 / 255.0  # smallest alpha that is composited
ALPHA_MAX = 0.99  # alpha clamp (keeps 1 - alpha invertible)
T_MIN = 1e-4  # transmittance at which compositing stops
SIGMA_CUT = 3.0  # Mahalanobis cut-off of each splat

BACKENDS = ("auto", "torch", "gsplat", "inria")

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


# --------------------------------------------------------------------------- maths
def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """Normalised quaternions (w, x, y, z) [N,4] -> rotation matrices [N,3,3]."""
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(q.shape[:-1] + (3, 3))


def covariance_3d(scales: torch.Tensor, quats: torch.Tensor) -> torch.Tensor:
    """World covariances R S S^T R^T [N,3,3] from activated scales and normalised quaternions."""
    M = quat_to_rotmat(quats) * scales[:, None, :]
    return M @ M.transpose(1, 2)


def eval_sh(degree: int, sh: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Evaluate real SH [N,(degree+1)^2,3] in unit directions [N,3] -> RGB [N,3] (clamped >= 0)."""
    res = SH_C0 * sh[:, 0]
    if degree > 0:
        x, y, z = dirs[:, 0:1], dirs[:, 1:2], dirs[:, 2:3]
        res = res - SH_C1 * y * sh[:, 1] + SH_C1 * z * sh[:, 2] - SH_C1 * x * sh[:, 3]
        if degree > 1:
            xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
            res = (res + SH_C2[0] * xy * sh[:, 4] + SH_C2[1] * yz * sh[:, 5]
                   + SH_C2[2] * (2 * zz - xx - yy) * sh[:, 6] + SH_C2[3] * xz * sh[:, 7]
                   + SH_C2[4] * (xx - yy) * sh[:, 8])
            if degree > 2:
                res = (res + SH_C3[0] * y * (3 * xx - yy) * sh[:, 9] + SH_C3[1] * xy * z * sh[:, 10]
                       + SH_C3[2] * y * (4 * zz - xx - yy) * sh[:, 11]
                       + SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[:, 12]
                       + SH_C3[4] * x * (4 * zz - xx - yy) * sh[:, 13]
                       + SH_C3[5] * z * (xx - yy) * sh[:, 14] + SH_C3[6] * x * (xx - 3 * yy) * sh[:, 15])
    return (res + 0.5).clamp_min(0.0)


def project_gaussians(means, quats, scales, opacities, viewmat, K, width, height,
                      near=0.01, far=100.0, eps2d=0.3):
    """EWA projection of 3D Gaussians to screen-space ellipses (OpenCV camera, pixels).

    Returns a dict: means2d [N,2], conics [N,3] (inverse 2D covariance a, b, c), depths [N],
    log_opacity [N], alpha_thr [N] (smallest alpha drawn, encoding both cut-offs), extent [N,2]
    (half size of the axis-aligned box of the drawn ellipse), radii [N] (3-sigma radius, int,
    0 when culled), valid [N] bool.
    """
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    p = means @ R.T + t
    z = p[:, 2]
    in_depth = (z > near) & (z < far)
    zs = torch.where(in_depth, z, torch.ones_like(z))  # keeps culled points finite
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    # clamp the Jacobian's position as 3DGS / gsplat do (limits the blow-up near the frustum edge)
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_xp, lim_xn = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_yp, lim_yn = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    tx = zs * torch.minimum(lim_xp, torch.maximum(-lim_xn, p[:, 0] / zs))
    ty = zs * torch.minimum(lim_yp, torch.maximum(-lim_yn, p[:, 1] / zs))
    zero = torch.zeros_like(zs)
    J = torch.stack([fx / zs, zero, -fx * tx / zs ** 2, zero, fy / zs, -fy * ty / zs ** 2], -1).reshape(-1, 2, 3)
    cov_cam = R @ covariance_3d(scales, quats) @ R.T
    cov2d = J @ cov_cam @ J.transpose(1, 2)
    a = cov2d[:, 0, 0] + eps2d
    b = cov2d[:, 0, 1]
    c = cov2d[:, 1, 1] + eps2d
    det = a * c - b * b
    drawable = in_depth & (det > 0)
    det_s = torch.where(drawable, det, torch.ones_like(det))
    conics = torch.stack([c / det_s, -b / det_s, a / det_s], -1)
    means2d = torch.stack([fx * p[:, 0] / zs + cx, fy * p[:, 1] / zs + cy], -1)

    with torch.no_grad():
        op = opacities.detach().clamp(1e-12, 1.0)
        ok = drawable & (op >= ALPHA_MIN)
        # squared Mahalanobis radius at which the splat is cut: the 3-sigma ellipse, or where
        # alpha drops below 1/255 if that comes first
        m2 = torch.clamp(2 * torch.log(op / ALPHA_MIN), max=SIGMA_CUT ** 2).clamp_min(0.0)
        extent = torch.stack([torch.sqrt(m2 * a.detach()), torch.sqrt(m2 * c.detach())], -1)
        m = means2d.detach()
        ok &= (m[:, 0] + extent[:, 0] >= 0.5) & (m[:, 0] - extent[:, 0] <= width - 0.5)
        ok &= (m[:, 1] + extent[:, 1] >= 0.5) & (m[:, 1] - extent[:, 1] <= height - 0.5)
        mid = 0.5 * (a + c).detach()
        lam = mid + torch.sqrt(torch.clamp(mid * mid - det.detach(), min=0.1))
        radii = torch.where(ok, torch.ceil(SIGMA_CUT * torch.sqrt(lam)), torch.zeros_like(lam)).int()
        alpha_thr = torch.clamp(op * math.exp(-0.5 * SIGMA_CUT ** 2), min=ALPHA_MIN)
    return {"means2d": means2d, "conics": conics, "depths": z, "log_opacity": torch.log(opacities.clamp_min(1e-12)),
            "alpha_thr": alpha_thr, "extent": extent, "radii": radii, "valid": ok}


# ------------------------------------------------------------------ torch backend
def _bin_tiles(means2d, extent, valid, depths, width, height, tile):
    """Pairs (tile, Gaussian) of every Gaussian with every tile its box touches, sorted by tile
    then depth. Returns (gaussian ids [M], per-tile start [T], per-tile count [T], TX, TY)."""
    N = means2d.shape[0]
    dev = means2d.device
    TX, TY = math.ceil(width / tile), math.ceil(height / tile)
    m = means2d.detach()
    x0 = torch.floor((m[:, 0] - extent[:, 0] - 0.5) / tile).clamp(0, TX - 1).long()
    x1 = torch.floor((m[:, 0] + extent[:, 0] - 0.5) / tile).clamp(0, TX - 1).long()
    y0 = torch.floor((m[:, 1] - extent[:, 1] - 0.5) / tile).clamp(0, TY - 1).long()
    y1 = torch.floor((m[:, 1] + extent[:, 1] - 0.5) / tile).clamp(0, TY - 1).long()
    nx = (x1 - x0 + 1) * valid
    ny = (y1 - y0 + 1) * valid
    n = nx * ny
    gid = torch.repeat_interleave(torch.arange(N, device=dev), n)
    local = torch.arange(gid.shape[0], device=dev) - (torch.cumsum(n, 0) - n)[gid]
    tile_id = (y0[gid] + local // nx[gid]) * TX + x0[gid] + local % nx[gid]
    rank = torch.empty(N, dtype=torch.long, device=dev)
    rank[torch.argsort(depths.detach(), stable=True)] = torch.arange(N, device=dev)
    perm = torch.argsort(tile_id * N + rank[gid])
    counts = torch.bincount(tile_id, minlength=TX * TY)
    starts = torch.cumsum(counts, 0) - counts
    return gid[perm], starts, counts, TX, TY


def rasterize_tiles(proj, colors, width, height, tile=16, chunk=32):
    """Pure-PyTorch tiled rasterizer.

    Gaussians are binned into ``tile`` x ``tile`` pixel tiles and depth-sorted per tile. All
    unfinished tiles advance together through their sorted lists ``chunk`` Gaussians at a time:
    a chunk is a dense [tiles, chunk, tile pixels] block whose exponent is one batched matmul of
    per-pair quadratic coefficients with the fixed tile-pixel monomials (1, x, y, x^2, xy, y^2);
    a running transmittance carries over between chunks, and a tile leaves the loop as soon as
    all its pixels are saturated (T < 1e-4) or its list is exhausted. Differentiable by autograd.

    Returns colour [C,H,W] (features, not blended with background), alpha [1,H,W], depth [1,H,W].
    """
    means2d, conics, depths = proj["means2d"], proj["conics"], proj["depths"]
    dev, dtype = means2d.device, means2d.dtype
    N, C = colors.shape
    gids, starts, counts, TX, TY = _bin_tiles(means2d, proj["extent"], proj["valid"], depths, width, height, tile)
    P = tile * tile
    # per-Gaussian data with one padding row (index N) that never draws
    pad = lambda x, v: torch.cat([x, torch.full((1,) + x.shape[1:], v, dtype=dtype, device=dev)])  # noqa: E731
    mean_p, conic_p = pad(means2d, 0.0), pad(conics, 0.0)
    logo_p, thr_p = pad(proj["log_opacity"], -1e4), pad(proj["alpha_thr"], 2.0)
    feat_p = pad(torch.cat([colors, depths[:, None]], 1), 0.0)  # [N+1, C+1]

    coord = torch.arange(tile, device=dev, dtype=dtype) + 0.5 - tile / 2  # tile-centred pixel centres
    ly, lx = torch.meshgrid(coord, coord, indexing="ij")
    lx, ly = lx.reshape(-1), ly.reshape(-1)
    mono = torch.stack([torch.ones_like(lx), lx, ly, lx * lx, lx * ly, ly * ly])  # [6, P]

    tids = torch.nonzero(counts > 0).flatten()
    T_in = torch.ones(tids.shape[0], P, device=dev, dtype=dtype)
    ar = torch.arange(chunk, device=dev)
    out_tiles, out_vals = [], []
    c = 0
    while tids.numel() > 0:
        cnt = counts[tids]
        k = c * chunk + ar  # rank within the tile list
        ok = k[None, :] < cnt[:, None]
        idx = torch.where(ok, starts[tids][:, None] + k[None, :], torch.zeros_like(k)[None, :])
        ids = torch.where(ok, gids[idx] if gids.numel() else idx, torch.full_like(idx, N))  # [A, K]
        origin = torch.stack([(tids % TX) * tile + tile / 2, (tids // TX) * tile + tile / 2], -1).to(dtype)
        mu = mean_p[ids] - origin[:, None, :]  # [A, K, 2] tile-centred means
        ca, cb, cc = conic_p[ids].unbind(-1)
        mx, my = mu[..., 0], mu[..., 1]
        # log alpha = log o - 0.5 (a dx^2 + 2 b dx dy + c dy^2), dx = x - mx, as a quadratic in (x, y)
        coef = torch.stack([
            logo_p[ids] - 0.5 * (ca * mx * mx + cc * my * my) - cb * mx * my,
            ca * mx + cb * my, cb * mx + cc * my, -0.5 * ca, -cb, -0.5 * cc], -1)  # [A, K, 6]
        alpha = torch.exp(coef @ mono)  # [A, K, P]
        alpha = torch.where(alpha >= thr_p[ids][..., None], alpha.clamp(max=ALPHA_MAX), torch.zeros_like(alpha))
        one_m = 1.0 - alpha
        T_incl = T_in[:, None, :] * torch.cumprod(one_m, dim=1)
        w = alpha * (T_incl / one_m)
        w = torch.where(T_incl >= T_MIN, w, torch.zeros_like(w))
        vals = torch.cat([w.transpose(1, 2) @ feat_p[ids], w.sum(1)[..., None]], -1)  # [A, P, C+2]
        out_tiles.append(tids)
        out_vals.append(vals)
        T_out = T_incl[:, -1, :]
        with torch.no_grad():
            keep = (cnt > (c + 1) * chunk) & (T_out.amax(1) >= T_MIN)
        tids, T_in = tids[keep], T_out[keep]
        c += 1

    acc = torch.zeros(TX * TY, P, C + 2, device=dev, dtype=dtype)
    if out_tiles:
        acc = acc.index_add(0, torch.cat(out_tiles), torch.cat(out_vals))
    img = acc.reshape(TY, TX, tile, tile, C + 2).permute(4, 0, 2, 1, 3).reshape(C + 2, TY * tile, TX * tile)
    img = img[:, :height, :width]
    return img[:C], img[C + 1:C + 2], img[C:C + 1]


# ------------------------------------------------------------------ CUDA backends
def backend_available(name: str) -> bool:
    if name == "torch":
        return True
    if not torch.cuda.is_available():
        return False
    module = {"gsplat": "gsplat", "inria": "diff_gaussian_rasterization"}[name]
    return importlib.util.find_spec(module) is not None


def resolve_backend(name: str, device) -> str:
    """Backend actually used for ``name`` on ``device``; a clear error when it cannot run."""
    if name not in BACKENDS:
        raise ValueError(f"unknown rasterizer '{name}'; choose one of {', '.join(BACKENDS)}")
    is_cuda = torch.device(device).type == "cuda"
    if name == "auto":
        for cand in ("gsplat", "inria"):
            if is_cuda and backend_available(cand):
                return cand
        return "torch"
    if name != "torch":
        if not backend_available(name):
            hint = {"gsplat": "pip install gsplat (needs CUDA)",
                    "inria": "build graphdeco-inria/diff-gaussian-rasterization (needs CUDA)"}[name]
            raise ValueError(f"rasterizer '{name}' is not available here: {hint}; or use rasterizer=torch")
        if not is_cuda:
            raise ValueError(f"rasterizer '{name}' needs CUDA tensors; the Gaussians are on {device}")
    return name


def _render_gsplat(means, quats, scales, opacities, shs, sh_degree, viewmat, K, cam, bg):
    from gsplat import rasterization

    render, alphas, meta = rasterization(
        means, quats, scales, opacities, shs, viewmat[None], K[None], cam.width, cam.height,
        near_plane=cam.near, far_plane=cam.far, sh_degree=sh_degree, eps2d=0.3,
        render_mode="RGB+D", backgrounds=None, packed=False)
    colors = render[0, ..., :3].permute(2, 0, 1)
    depth_img = render[0, ..., 3:4].permute(2, 0, 1)
    alpha = alphas[0].permute(2, 0, 1)
    radii = meta["radii"][0]
    if radii.dim() == 2:  # gsplat >= 1.5 returns per-axis radii
        radii = radii.max(-1).values
    means2d = meta["means2d"]  # [1, N, 2]; the strategy reads its .grad
    image = colors + (1 - alpha) * bg[:, None, None]
    return image, alpha, depth_img, radii.int(), means2d


def _render_inria(means, quats, scales, opacities, shs, sh_degree, viewmat, cam, bg):
    from diff_gaussian_rasterization import GaussianRasterizationSettings, GaussianRasterizer

    dev = means.device
    tanfovx, tanfovy = math.tan(cam.fovx / 2), math.tan(cam.fovy / 2)
    n, f = cam.near, cam.far
    P = torch.zeros(4, 4, device=dev)
    P[0, 0], P[1, 1] = 1 / tanfovx, 1 / tanfovy
    P[3, 2], P[2, 2], P[2, 3] = 1.0, f / (f - n), -(f * n) / (f - n)
    world_view = viewmat.T.contiguous()
    full_proj = (world_view @ P.T).contiguous()
    extra = {"antialiasing": False} if "antialiasing" in GaussianRasterizationSettings._fields else {}
    settings = GaussianRasterizationSettings(
        image_height=cam.height, image_width=cam.width, tanfovx=tanfovx, tanfovy=tanfovy, bg=bg,
        scale_modifier=1.0, viewmatrix=world_view, projmatrix=full_proj, sh_degree=sh_degree,
        campos=torch.as_tensor(cam.campos, device=dev), prefiltered=False, debug=False, **extra)
    screen = torch.zeros_like(means, requires_grad=True)
    rasterizer = GaussianRasterizer(settings)
    outs = rasterizer(means3D=means, means2D=screen, shs=shs, colors_precomp=None, opacities=opacities[:, None],
                      scales=scales, rotations=quats)
    image, radii = outs[0], outs[1]
    if len(outs) >= 4:  # ashawkey's fork (the reference's): image, radii, depth, alpha
        depth, alpha = outs[2], outs[3]
    else:  # graphdeco's: no alpha (and inverse depth): one more pass with colours (1, depth, 0) on black
        z = (means @ viewmat[:3, :3].T + viewmat[:3, 3])[:, 2:3]
        aux = GaussianRasterizer(settings._replace(bg=torch.zeros_like(bg)))(
            means3D=means, means2D=torch.zeros_like(means), shs=None,
            colors_precomp=torch.cat([torch.ones_like(z), z, torch.zeros_like(z)], 1),
            opacities=opacities[:, None], scales=scales, rotations=quats)[0]
        alpha, depth = aux[0:1], aux[1:2]
    return image, alpha, depth, radii.int(), screen


# ------------------------------------------------------------------------ render
def render(gaussians, camera, bg_color=(1.0, 1.0, 1.0), backend="auto", tile_size=16, chunk_size=32,
           colors_override=None):
    """Render ``gaussians`` (a GaussianModel) from ``camera`` (cameras.Camera).

    ``colors_override`` [N,3] replaces the SH colour (e.g. to render normals or features).
    """
    means = gaussians.means
    dev = means.device
    bg = torch.as_tensor(bg_color, dtype=torch.float32, device=dev)
    name = resolve_backend(backend, dev)
    if len(gaussians) == 0:
        raise ValueError("cannot render an empty Gaussian model (0 Gaussians)")
    viewmat, K = (t.to(means.dtype) for t in camera.tensors(dev))
    bg = bg.to(means.dtype)
    quats, scales, opacities = gaussians.quats, gaussians.scales, gaussians.opacities
    shs = gaussians.shs
    deg = gaussians.sh_degree
    if name == "gsplat":
        cols = colors_override if colors_override is not None else shs
        image, alpha, depth, radii, means2d = _render_gsplat(
            means, quats, scales, opacities, cols, None if colors_override is not None else deg,
            viewmat, K, camera, bg)
    elif name == "inria" and colors_override is None:
        image, alpha, depth, radii, means2d = _render_inria(means, quats, scales, opacities, shs, deg,
                                                            viewmat, camera, bg)
    else:
        if name == "inria":
            raise ValueError("colors_override is not supported by the inria backend")
        proj = project_gaussians(means, quats, scales, opacities, viewmat, K, camera.width, camera.height,
                                 camera.near, camera.far)
        if colors_override is not None:
            colors = colors_override
        else:
            dirs = None
            if deg > 0:  # view-dependent colour
                campos = torch.as_tensor(camera.campos, device=dev, dtype=means.dtype)
                dirs = torch.nn.functional.normalize(means - campos, dim=-1)
            colors = eval_sh(deg, shs, dirs)
        feat, alpha, depth = rasterize_tiles(proj, colors, camera.width, camera.height, tile_size, chunk_size)
        image = feat + (1 - alpha) * bg[:, None, None]
        radii, means2d = proj["radii"], proj["means2d"]
    # means2d_ndc: the inria rasterizer's screen-space tensor is [N,3] and its gradient is already
    # in NDC units; the others' are [N,2] pixel positions (densification scales those by W/2, H/2)
    return {"image": image.clamp(0, 1), "alpha": alpha, "depth": depth, "radii": radii, "visibility": radii > 0,
            "means2d": means2d, "means2d_ndc": name == "inria", "backend": name}
