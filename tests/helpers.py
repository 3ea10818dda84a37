"""Small scene builders and a command-line runner shared by the tests."""
import math
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


def gaussians_at(means, scale=0.03, opacity=0.9):
    """Isotropic grey Gaussians of one size and opacity at ``means`` [N, 3]."""
    n = means.shape[0]
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    return GaussianModel(0).set_params(
        means=means, scales=torch.full((n, 3), math.log(scale)), quats=quats,
        opacities=torch.full((n,), float(inverse_sigmoid(torch.tensor(opacity)))),
        sh0=rgb_to_sh(torch.full((n, 3), 0.7))[:, None], shN=torch.zeros(n, 0, 3))


def sphere_of_gaussians(n=2000, radius=0.5, scale=0.03, opacity=0.9, seed=0):
    """Isotropic Gaussians on a sphere surface (an analytic shape)."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g)
    return gaussians_at(radius * d / d.norm(dim=1, keepdim=True), scale, opacity)


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
