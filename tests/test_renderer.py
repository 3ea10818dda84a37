import math

import pytest
import torch

from cameras import Camera
from gaussians import GaussianModel
from gs_renderer import backend_available, eval_sh, project_gaussians, render, resolve_backend
from gaussians import sphere_of_gaussians
from helpers import make_gaussians
from oracles import render_dense

CAM = dict(elevation=-15, azimuth=35, radius=2.0, fovy_deg=49.1)


def cam(w, h=None, **kw):
    args = {**CAM, **kw}
    return Camera.orbit(args["elevation"], args["azimuth"], args["radius"], args["fovy_deg"], w, h)


def grads_of(g, out, weights):
    for p in g.params.values():
        p.grad = None
    out["means2d"].retain_grad()
    loss = sum((out[k] * w).sum() for k, w in weights.items())
    loss.backward()
    return {k: p.grad.clone() for k, p in g.params.items()}, out["means2d"].grad.clone()


@pytest.mark.parametrize("sh_degree,size", [(0, (37, 29)), (2, (48, 48))])
def test_tiled_matches_dense_reference(sh_degree, size):
    """Image, alpha, depth and every parameter gradient agree with the brute-force rasterizer."""
    g = make_gaussians(60, seed=1, sh_degree=sh_degree)
    c = cam(*size)
    gen = torch.Generator().manual_seed(0)
    weights = {k: torch.rand(n, size[1], size[0], generator=gen) for k, n in (("image", 3), ("alpha", 1), ("depth", 1))}
    out_t = render(g, c, bg_color=(0.2, 0.4, 0.6), backend="torch", tile_size=8, chunk_size=5)
    out_r = render_dense(g, c, bg_color=(0.2, 0.4, 0.6))
    assert out_t["image"].shape == (3, size[1], size[0])
    assert out_t["alpha"].max() > 0.5  # the scene is really drawn
    for k in ("image", "alpha", "depth"):
        torch.testing.assert_close(out_t[k], out_r[k], atol=2e-5, rtol=1e-4)
    gt, mt = grads_of(g, out_t, weights)
    gr, mr = grads_of(g, out_r, weights)
    for k in gt:
        torch.testing.assert_close(gt[k], gr[k], atol=1e-4, rtol=1e-3, msg=f"grad of {k}")
    torch.testing.assert_close(mt, mr, atol=1e-5, rtol=1e-3)
    assert gt["means"].abs().sum() > 0 and gt["scales"].abs().sum() > 0 and gt["quats"].abs().sum() > 0


def test_image_does_not_depend_on_tile_or_chunk_size():
    g = make_gaussians(200, seed=4, scale_range=(0.01, 0.2))
    c = cam(70, 50)
    a = render(g, c, backend="torch", tile_size=16, chunk_size=32)
    b = render(g, c, backend="torch", tile_size=8, chunk_size=3)
    torch.testing.assert_close(a["image"], b["image"], atol=1e-5, rtol=1e-4)


def test_gradients_match_finite_differences():
    g = make_gaussians(6, seed=7, sh_degree=1, dtype=torch.float64, scale_range=(0.05, 0.15), radius=0.25)
    c = cam(20, 18)
    w = torch.rand(3, 18, 20, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    wa = torch.rand(1, 18, 20, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def loss():
        out = render(g, c, bg_color=(0.3, 0.3, 0.3), backend="torch", tile_size=8, chunk_size=4)
        return (out["image"] * w).sum() + (out["alpha"] * wa).sum() + 0.1 * (out["depth"] * wa).sum()

    l0 = loss()
    l0.backward()
    eps = 1e-6
    checked = 0
    for name, p in g.params.items():
        if p.numel() == 0:
            continue
        for idx in [(0,) + (0,) * (p.dim() - 1), (3,) + (p.shape[1] - 1,) * (p.dim() - 1) if p.dim() > 1 else (3,)]:
            with torch.no_grad():
                p[idx] += eps
                lp = loss().item()
                p[idx] -= 2 * eps
                lm = loss().item()
                p[idx] += eps
            fd = (lp - lm) / (2 * eps)
            assert p.grad[idx].item() == pytest.approx(fd, rel=2e-3, abs=1e-6), f"{name}{idx}"
            checked += 1
    assert checked >= 10


def test_sphere_of_gaussians_projects_to_a_disk():
    """A sphere of radius r seen from distance d covers a disk of angular radius asin(r/d); splats
    of std s blur its rim outwards by at most 3 s."""
    r, s, d, fovy, n = 0.5, 0.03, 2.0, 49.1, 96
    g = sphere_of_gaussians(6000, radius=r, scale=s)
    c = Camera.orbit(-20, 50, d, fovy, n)
    out = render(g, c, backend="torch")
    px = lambda rad: math.tan(math.asin(rad / d)) / math.tan(math.radians(fovy) / 2) * n / 2  # noqa: E731
    ys, xs = torch.meshgrid(torch.arange(n) + 0.5, torch.arange(n) + 0.5, indexing="ij")
    dist = ((xs - n / 2) ** 2 + (ys - n / 2) ** 2).sqrt()
    mask = out["alpha"][0] > 0.5
    assert mask[dist <= px(r) - 1].all()  # the whole sphere's disk is covered
    assert not mask[dist > px(r + 3 * s) + 1].any()  # nothing beyond the blurred rim
    cy, cx = [v.float().mean().item() for v in torch.nonzero(mask, as_tuple=True)]
    assert abs(cx - n / 2 + 0.5) < 0.5 and abs(cy - n / 2 + 0.5) < 0.5  # centred
    # the front of the sphere is at depth d - r: the normalised depth at the centre is about 1.5
    depth = out["depth"][0, 44:52, 44:52] / out["alpha"][0, 44:52, 44:52]
    assert abs(depth.mean().item() - (d - r)) < 0.05
    # colour is the Gaussians' grey, composited over white outside
    assert abs(out["image"][:, 48, 48].mean().item() - 0.7) < 0.02
    assert torch.allclose(out["image"][:, 2, 2], torch.ones(3))


def test_radii_visibility_and_culling():
    g = make_gaussians(30, seed=2)
    with torch.no_grad():
        g.params["means"][0] = torch.tensor([0.0, 0.0, 5.0])  # behind the camera at +z = 2
        g.params["means"][1] = torch.tensor([50.0, 0.0, 0.0])  # far outside the frustum
    out = render(g, cam(32))
    assert out["radii"].shape == (30,) and out["radii"].dtype == torch.int32
    assert not out["visibility"][0] and not out["visibility"][1]
    assert out["visibility"][2:].sum() > 20 and (out["radii"][out["visibility"]] > 0).all()


@pytest.mark.slow
def test_512_with_20k_gaussians_renders_on_cpu():
    """The sparse tiled design keeps memory bounded (a dense N x H x W would be 20 GB)."""
    g = GaussianModel(0).init_random_blob(20000, seed=0)
    out = render(g, Camera.orbit(0, 0, 2.0, 49.1, 512), backend="torch")
    out["image"].mean().backward()
    assert out["image"].shape == (3, 512, 512) and torch.isfinite(g.params["means"].grad).all()


def test_sh_degree_1_is_view_dependent():
    sh = torch.zeros(1, 4, 3)
    sh[0, 3] = 1.0  # the -x coefficient
    a = eval_sh(1, sh, torch.tensor([[1.0, 0, 0]]))
    b = eval_sh(1, sh, torch.tensor([[-1.0, 0, 0]]))
    assert a.sum() < b.sum()


def test_backend_selection_and_errors():
    assert resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(ValueError, match="unknown rasterizer"):
        resolve_backend("optix", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            resolve_backend("gsplat", "cpu")
    with pytest.raises(ValueError, match="empty"):
        render(GaussianModel(0), cam(16))


def test_projection_conic_is_inverse_covariance():
    g = make_gaussians(10, seed=5)
    c = cam(40)
    vm, K = c.tensors()
    p = project_gaussians(g.means, g.quats, g.scales, g.opacities, vm, K, 40, 40)
    a, b, cc = p["conics"].unbind(-1)
    # conic * (cov2d + 0.3 I) = I, with cov2d recovered from the conic
    det = a * cc - b * b
    cov = torch.stack([cc / det, -b / det, a / det], -1)
    assert (cov[:, 0] >= 0.3 - 1e-4).all() and (cov[:, 2] >= 0.3 - 1e-4).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA parity needs a GPU")
@pytest.mark.parametrize("backend", ["gsplat", "inria"])
def test_cuda_backends_match_torch(backend):
    if not backend_available(backend):
        pytest.skip(f"{backend} not installed")
    g = make_gaussians(500, seed=0)
    g.params = {k: v.detach().cuda().requires_grad_(True) for k, v in g.params.items()}
    c = cam(128)
    ref = render(g, c, backend="torch")
    out = render(g, c, backend=backend)
    # CUDA rasterizers cut splats at tile boxes, not at the 3-sigma ellipse: alpha differs by < 0.011
    assert (out["image"] - ref["image"]).abs().mean() < 2e-3
    assert (out["alpha"] - ref["alpha"]).abs().mean() < 2e-3
    (out["image"].mean()).backward()
    assert torch.isfinite(g.params["means"].grad).all()
