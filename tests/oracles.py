"""Slow, obviously correct references that the fast paths are tested against (test oracles).

- ``render_dense``: gs_renderer.render's torch backend with the tiled rasterizer replaced by a
  dense one that composites every pixel against every Gaussian (tiny scenes only).
- ``density_brute``: mesh_utils.density_grid's density, summed over every Gaussian at each point.
"""
from __future__ import annotations

import torch

from gs_renderer import ALPHA_MAX, ALPHA_MIN, SIGMA_CUT, T_MIN, eval_sh, project_gaussians
from mesh_utils import activated_gaussians


def rasterize_dense(proj, colors, width, height):
    """Every pixel against every Gaussian ([H*W, N] tensors): gs_renderer's image model with no tiles,
    no binning, no chunks."""
    means2d, conics = proj["means2d"], proj["conics"]
    dev, dtype = means2d.device, means2d.dtype
    order = torch.argsort(proj["depths"].detach(), stable=True)
    order = order[proj["valid"][order]]
    m, cn = means2d[order], conics[order]
    ys, xs = torch.meshgrid(torch.arange(height, device=dev, dtype=dtype) + 0.5,
                            torch.arange(width, device=dev, dtype=dtype) + 0.5, indexing="ij")
    dx = xs.reshape(-1, 1) - m[None, :, 0]
    dy = ys.reshape(-1, 1) - m[None, :, 1]
    power = -0.5 * (cn[:, 0] * dx * dx + cn[:, 2] * dy * dy) - cn[:, 1] * dx * dy
    alpha = torch.exp(proj["log_opacity"][order] + power)
    keep = (power >= -0.5 * SIGMA_CUT ** 2) & (alpha >= ALPHA_MIN)
    alpha = torch.where(keep, alpha.clamp(max=ALPHA_MAX), torch.zeros_like(alpha))
    T_incl = torch.cumprod(1 - alpha, dim=1)
    T_excl = torch.cat([torch.ones_like(T_incl[:, :1]), T_incl[:, :-1]], 1)
    w = torch.where(T_incl >= T_MIN, alpha * T_excl, torch.zeros_like(alpha))
    feat = torch.cat([colors[order], proj["depths"][order, None]], 1)
    out = torch.cat([w @ feat, w.sum(1, keepdim=True)], 1).T.reshape(-1, height, width)
    C = colors.shape[1]
    return out[:C], out[C + 1:C + 2], out[C:C + 1]


def render_dense(gaussians, camera, bg_color=(1.0, 1.0, 1.0)) -> dict:
    """``gs_renderer.render(gaussians, camera, bg_color, backend="torch")`` through ``rasterize_dense``."""
    means = gaussians.means
    viewmat, K = (t.to(means.dtype) for t in camera.tensors(means.device))
    bg = torch.as_tensor(bg_color, dtype=means.dtype, device=means.device)
    proj = project_gaussians(means, gaussians.quats, gaussians.scales, gaussians.opacities, viewmat, K, camera.width,
                             camera.height, camera.near, camera.far)
    dirs = None
    if gaussians.sh_degree > 0:
        campos = torch.as_tensor(camera.campos, device=means.device, dtype=means.dtype)
        dirs = torch.nn.functional.normalize(means - campos, dim=-1)
    feat, alpha, depth = rasterize_dense(proj, eval_sh(gaussians.sh_degree, gaussians.shs, dirs), camera.width,
                                         camera.height)
    return {"image": (feat + (1 - alpha) * bg[:, None, None]).clamp(0, 1), "alpha": alpha, "depth": depth,
            "means2d": proj["means2d"]}


@torch.no_grad()
def density_brute(gaussians, points, sigma_cut=None, min_opacity=0.005):
    """The density at ``points`` [P,3] summed over every Gaussian (optionally cut at ``sigma_cut``)."""
    means, cov, op, _ = activated_gaussians(gaussians, min_opacity)
    P = torch.linalg.inv(cov)
    d = points[:, None, :] - means[None]  # [P, N, 3]
    maha = torch.einsum("pni,nij,pnj->pn", d, P, d)
    val = op * torch.exp(-0.5 * maha)
    if sigma_cut is not None:
        val = torch.where(maha <= sigma_cut ** 2, val, torch.zeros_like(val))
    return val.sum(1)
