import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from gaussians import GaussianModel, OptimConfig, PlyFormatError, exponential_lr, knn_mean_sq_dist
from helpers import make_gaussians


def test_random_blob_init():
    g = GaussianModel(sh_degree=0).init_random_blob(3000, radius=0.5, seed=1)
    assert len(g) == 3000
    assert g.means.norm(dim=1).max() <= 0.5 + 1e-6
    # uniform in the ball: the fraction inside radius 0.25 is about (1/2)^3
    frac = (g.means.norm(dim=1) < 0.25).float().mean().item()
    assert abs(frac - 0.125) < 0.03
    assert torch.allclose(g.opacities, torch.full((3000,), 0.1), atol=1e-6)
    assert torch.allclose(g.quats, torch.tensor([1.0, 0, 0, 0]).expand(3000, 4))
    rgb = g.params["sh0"][:, 0] * 0.28209479177387814 + 0.5
    assert rgb.min() >= 0 and rgb.max() <= 1


def test_knn_matches_scipy():
    pts = torch.rand(500, 3, generator=torch.Generator().manual_seed(0))
    d, _ = cKDTree(pts.numpy()).query(pts.numpy(), k=4)
    expected = (d[:, 1:] ** 2).mean(1)
    np.testing.assert_allclose(knn_mean_sq_dist(pts, chunk=64).numpy(), expected, rtol=1e-4, atol=1e-7)


def test_exponential_lr_schedule():
    kw = dict(lr_init=1e-3, lr_final=2e-5, max_steps=500)
    assert exponential_lr(0, **kw) == pytest.approx(1e-3)
    assert exponential_lr(500, **kw) == pytest.approx(2e-5)
    assert exponential_lr(1000, **kw) == pytest.approx(2e-5)
    assert exponential_lr(250, **kw) == pytest.approx((1e-3 * 2e-5) ** 0.5)  # log-linear midpoint
    assert exponential_lr(0, delay_steps=100, delay_mult=0.01, **kw) == pytest.approx(1e-5)


def test_optimizer_groups_and_schedule():
    g = GaussianModel(1).init_random_blob(50, seed=0)
    opt = g.setup_optimizer(OptimConfig(position_lr_init=1e-3, position_lr_final=1e-5, position_lr_max_steps=100,
                                        feature_lr=0.02))
    lrs = {grp["name"]: grp["lr"] for grp in opt.param_groups}
    assert lrs["sh0"] == 0.02 and lrs["shN"] == pytest.approx(0.001)
    assert g.update_learning_rate(100) == pytest.approx(1e-5)
    assert {grp["name"]: grp["lr"] for grp in opt.param_groups}["means"] == pytest.approx(1e-5)


@pytest.mark.parametrize("deg", [0, 3])
def test_ply_round_trip(tmp_path, deg):
    g = make_gaussians(40, seed=3, sh_degree=deg)
    path = str(tmp_path / "p.ply")
    g.save_ply(path)
    h = GaussianModel.load_ply(path)
    assert h.sh_degree == deg and len(h) == 40
    for k in g.params:
        torch.testing.assert_close(h.params[k], g.params[k])
    from plyfile import PlyData
    names = [p.name for p in PlyData.read(path)["vertex"].properties]
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[-8:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert len(names) == 17 + 3 * ((deg + 1) ** 2 - 1)


def test_ply_f_rest_is_channel_major(tmp_path):
    """3DGS stores f_rest as [N, 3, K-1] flattened: all red coefficients first."""
    g = make_gaussians(2, sh_degree=1)
    g.params["shN"].data[:] = torch.arange(9.0).reshape(3, 3)  # [K-1=3 coeffs, 3 channels]
    path = str(tmp_path / "p.ply")
    g.save_ply(path)
    from plyfile import PlyData
    v = PlyData.read(path)["vertex"]
    assert [float(v[f"f_rest_{i}"][0]) for i in range(3)] == [0.0, 3.0, 6.0]  # red of coeffs 1..3


def test_bad_ply_files(tmp_path):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"this is not a ply")
    with pytest.raises(PlyFormatError, match="not a readable"):
        GaussianModel.load_ply(str(bad))
    import trimesh
    mesh_ply = tmp_path / "mesh.ply"
    trimesh.creation.box().export(str(mesh_ply))
    with pytest.raises(PlyFormatError, match="not a 3D Gaussian splatting"):
        GaussianModel.load_ply(str(mesh_ply))
    with pytest.raises(FileNotFoundError):
        GaussianModel.load_ply(str(tmp_path / "nope.ply"))


def test_nan_parameters_rejected():
    g = make_gaussians(5)
    p = {k: v.detach().clone() for k, v in g.params.items()}
    p["means"][2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        GaussianModel(0).set_params(**p)
