"""The web viewers' .splat: a file written here byte by byte from the format (antimatter15/splat's
convert.py: per Gaussian, little-endian float32 x, y, z, float32 exp-scales, uint8 RGBA with
colour = 0.5 + SH_C0 * f_dc and alpha = sigmoid(opacity), uint8 rotation q / |q| * 128 + 128 in
the .ply's rot_0..rot_3 order; sorted by -exp(sum of log scales) * sigmoid(opacity))."""
import math
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from gaussians import GaussianModel, PlyFormatError
from helpers import make_gaussians

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
C0 = 0.28209479177387814


def test_reading_a_splat_written_from_the_format(tmp_path):
    rows = [((0.1, -0.2, 0.3), (0.05, 0.02, 0.01), (255, 128, 0, 200), (0.5, 0.5, -0.5, 0.5)),
            ((1.0, 2.0, 3.0), (0.01, 0.01, 0.01), (0, 0, 255, 255), (1.0, 0.0, 0.0, 0.0))]
    with open(tmp_path / "a.splat", "wb") as fh:
        for pos, scale, rgba, q in rows:
            fh.write(struct.pack("<3f", *pos) + struct.pack("<3f", *scale) + bytes(rgba)
                     + bytes(int(min(255, max(0, c * 128 + 128))) for c in q))
    g = GaussianModel.load(str(tmp_path / "a.splat"))
    g.params = {k: v.detach() for k, v in g.params.items()}
    assert len(g) == 2 and g.sh_degree == 0
    assert torch.allclose(g.means, torch.tensor([r[0] for r in rows]))
    assert torch.allclose(g.scales, torch.tensor([r[1] for r in rows]), rtol=1e-6)
    rgb = C0 * g.params["sh0"][:, 0] + 0.5
    assert torch.allclose(rgb, torch.tensor([r[2][:3] for r in rows], dtype=torch.float32) / 255, atol=1e-6)
    assert abs(float(g.opacities[0]) - 200 / 255) < 1e-6 and float(g.opacities[1]) > 0.99
    q = torch.nn.functional.normalize(g.params["quats"], dim=1)
    assert torch.allclose(q[0], torch.tensor([0.5, 0.5, -0.5, 0.5]), atol=1 / 128)


def test_round_trip_within_the_quantisation_and_the_reference_order(tmp_path):
    g = make_gaussians(300, seed=3)
    g.save_splat(str(tmp_path / "g.splat"))
    assert os.path.getsize(tmp_path / "g.splat") == 32 * 300
    back = GaussianModel.load_splat(str(tmp_path / "g.splat"))
    p = {k: v.detach().numpy() for k, v in g.params.items()}
    b = {k: v.detach().numpy() for k, v in back.params.items()}
    order = np.argsort(-np.exp(p["scales"].sum(1)) / (1 + np.exp(-p["opacities"])), kind="stable")  # the reference's
    assert np.array_equal(b["means"], p["means"][order])  # float32: exact
    assert np.allclose(b["scales"], p["scales"][order], atol=1e-6)
    rgb0 = np.clip(0.5 + C0 * p["sh0"][order, 0], 0, 1)
    assert np.abs((0.5 + C0 * b["sh0"][:, 0]) - rgb0).max() <= 0.5 / 255 + 1e-6
    a0 = 1 / (1 + np.exp(-p["opacities"][order]))
    assert np.abs(1 / (1 + np.exp(-b["opacities"])) - a0).max() <= 0.5 / 255 + 1e-6
    q0 = p["quats"][order] / np.linalg.norm(p["quats"][order], axis=1, keepdims=True)
    q1 = b["quats"]
    q1 = q1 / np.linalg.norm(q1, axis=1, keepdims=True)
    assert np.abs(np.abs((q0 * q1).sum(1)) - 1).max() < 2e-3  # same rotation up to 1/128 steps


def test_bad_splat_files_are_one_line_errors(tmp_path):
    (tmp_path / "short.splat").write_bytes(b"\x00" * 31)
    with pytest.raises(PlyFormatError, match="32 bytes per Gaussian"):
        GaussianModel.load(str(tmp_path / "short.splat"))
    (tmp_path / "nan.splat").write_bytes(struct.pack("<3f", math.nan, 0, 0) + struct.pack("<3f", 1, 1, 1) + bytes(8))
    with pytest.raises(PlyFormatError, match="non-finite"):
        GaussianModel.load(str(tmp_path / "nan.splat"))


@pytest.mark.slow
def test_converter_and_stage1_splat_format(tmp_path):
    g = make_gaussians(50, seed=1)
    g.save_ply(str(tmp_path / "m.ply"))
    r = subprocess.run([sys.executable, "scripts/convert_splat.py", str(tmp_path / "m.ply")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and (tmp_path / "m.splat").stat().st_size == 32 * 50, r.stderr
    r = subprocess.run([sys.executable, "scripts/convert_splat.py", str(tmp_path / "m.splat"), "--out",
                        str(tmp_path / "back.ply")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and len(GaussianModel.load(str(tmp_path / "back.ply"))) == 50, r.stderr
    r = subprocess.run([sys.executable, "scripts/convert_splat.py", str(tmp_path / "nothing.txt")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
    spot = os.path.join(ROOT, "data", "spot", "spot_triangulated.obj")
    r = subprocess.run([sys.executable, "main.py", "--config", "configs/recon.yaml", f"input={spot}",
                        f"outdir={tmp_path}", "save_path=s", "splat_format=splat", "iters=3", "recon_num_views=2",
                        "ref_size=32", "num_pts=200", "mc_resolution=32", "mc_num_blocks=2", "texture_size=32",
                        "bake_resolution=32", "density_thresh=0.05", "--quiet"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "s_model.splat").stat().st_size % 32 == 0 and not (tmp_path / "s_model.ply").exists()
    r = subprocess.run([sys.executable, "main.py", "--config", "configs/recon.yaml", f"input={spot}",
                        f"outdir={tmp_path}", "save_path=t", f"load={tmp_path}/s_model.splat", "iters=1",
                        "recon_num_views=2", "ref_size=32", "mc_resolution=32", "mc_num_blocks=2", "texture_size=32",
                        "bake_resolution=32", "density_thresh=0.05", "--quiet"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
