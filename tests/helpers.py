"""Small scene builders and a command-line runner shared by the tests."""
import os
import subprocess
import sys

import torch

from gaussians import GaussianModel, inverse_sigmoid, rgb_to_sh


def make_gaussians(n=20, seed=0, sh_degree=0, dtype=torch.float32, opacity_range=(0.3, 0.9), scale_range=(0.03, 0.12),
                   radius=0.4):
    """Random anisotropic Gaussians with random rotations, opacities and colours."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) * 2 - 1) * radius
    lo, hi = scale_range
    scales = torch.log(lo + (hi - lo) * torch.rand(n, 3, generator=g))
    quats = torch.randn(n, 4, generator=g)
    op = opacity_range[0] + (opacity_range[1] - opacity_range[0]) * torch.rand(n, generator=g)
    rgb = torch.rand(n, 3, generator=g)
    shN = 0.2 * torch.randn(n, (sh_degree + 1) ** 2 - 1, 3, generator=g)
    return GaussianModel(sh_degree).set_params(
        dtype=dtype, means=means, scales=scales, quats=quats, opacities=inverse_sigmoid(op),
        sh0=rgb_to_sh(rgb)[:, None], shN=shN)


def free_port() -> int:
    """A TCP port on the loopback interface that nothing holds now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, cwd=ROOT, timeout=300):
    """Run ``python *args`` in the repository (or ``cwd``), offline, capturing its output."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


# a small run: 64 px, a coarse mesh of a few thousand faces, short refinement (CPU seconds)
SMALL = ["ref_size=64", "resolution_schedule=[32,64]", "resolution_milestones=[0.5]", "num_pts=800",
         "density_start_iter=2", "densification_interval=4", "mc_resolution=32", "mc_num_blocks=4",
         "texture_size=128", "bake_resolution=64", "bake_num_azimuth=4", "bake_elevations=[0]",
         "decimate_target=3000", "refine_resolution=64", "refine_inference_steps=10", "quiet=true",
         "rasterizer=torch", "mesh_renderer=torch", "device=cpu"]


def run_both(cfg_name, overrides):
    """Stage 1 then stage 2 of ``configs/<cfg_name>`` with ``overrides``, in this process."""
    from config import load_config
    from trainer import Stage1, Stage2

    cfg = load_config(os.path.join(ROOT, "configs", cfg_name), overrides)
    r1 = Stage1(cfg, log=lambda *a: None).run()
    r2 = Stage2(cfg, log=lambda *a: None).run()
    return cfg, r1, r2
