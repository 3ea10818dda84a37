"""Reconstruction guidance: known posed views instead of a diffusion prior."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cameras import View
from guidance.base import Guidance


class ReconGuidance(Guidance):
    """MSE to the posed view each render was made from (composited on the render's background).
    ``refine`` returns those targets, so stage 2 fits the texture to the views directly."""

    def __init__(self, views, device="cpu"):
        self.views = views
        self.device = torch.device(device)
        self.rgbs = views.rgbs.to(self.device)
        self.masks = views.masks.to(self.device)

    def sample_views(self, batch, rng, orbit=None):
        idx = rng.choice(len(self.views), size=batch, replace=batch > len(self.views))
        return [View(self.views.cameras[i], index=int(i)) for i in idx]

    def targets(self, views, size):
        out = []
        for v in views:
            bg = torch.as_tensor(v.background, dtype=self.rgbs.dtype, device=self.device)[:, None, None]
            m = self.masks[v.index]
            out.append(self.rgbs[v.index] * m + bg * (1 - m))
        t = torch.stack(out)
        return t if t.shape[-2:] == tuple(size) else F.interpolate(t, size, mode="bilinear", align_corners=False)

    def train_step(self, images, views, step_ratio):
        return F.mse_loss(images, self.targets(views, images.shape[-2:]))

    def refine(self, images, views, strength, steps):
        return self.targets(views, images.shape[-2:])
