"""An oracle Zero123 for toy objects: a measuring instrument for the generative loop, never a prior
a user config can name.

    g = OracleZero123.for_object(cfg, device, seed)      # cfg: a loaded configs/toy.yaml
    ctx = trainer.Context(cfg, build_guidance=oracle_builder(seed))   # Stage1/Stage2(cfg, context=ctx)

It is the toy Zero123 guidance (``guidance.zero123.Zero123Guidance``: timesteps, weighting, CFG,
the VAE encoding of renders, SDS, stage 2's SDEdit all run unchanged) with one thing replaced: the
denoiser. For noisy latents x_t at timestep t and each view's camera embedding exactly as the
guidance builds it for the UNet (``camera_T``), it turns the embedding back into a camera with
Zero123's training-data convention (``toy.objects.camera_from_zero123_T``, the inverse of
``zero123_T``, not guidance/zero123.py), renders the object's ground truth there at the prior's
resolution on that view's background, encodes it with the checkpoint's VAE (posterior mean) to
x0, and returns eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t) on both CFG branches. A loop fed
by it can only lose what it is given: what the 3D result lacks is the loop's doing.

``mirror_azimuth=True`` (tests only) builds the embedding from the azimuths negated, as a guidance
with a mirrored orbit convention would: the oracle then describes the mirror image of the object.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from cameras import Camera, orbit_camera
from guidance.diffusion import common_kwargs
from guidance.zero123 import Zero123Guidance
from mesh_renderer import render_mesh
from toy import objects as toy_objects


class OracleZero123(Zero123Guidance):
    """Zero123 guidance whose denoiser knows the toy object ``mesh`` (see module docstring)."""

    def __init__(self, model_path, mesh, mirror_azimuth: bool = False, fovy: float = toy_objects.FOVY,
                 exact_targets: bool = False, **kw):
        self.mesh = mesh
        self.mirror_azimuth = bool(mirror_azimuth)
        self.exact_targets = bool(exact_targets)
        self.fovy = float(fovy)
        super().__init__(model_path, **kw)

    @classmethod
    def for_object(cls, cfg, device, seed: int, mirror_azimuth: bool = False, exact_targets: bool = False):
        """The oracle of toy object ``seed`` with ``cfg``'s guidance settings (configs/toy.yaml)."""
        return cls(cfg.guidance_model, toy_objects.make_object(seed), mirror_azimuth, cfg.fovy, exact_targets,
                   resolution=cfg.zero123_resolution, **common_kwargs(cfg, device, cfg.guidance_scale))

    def camera_T(self, views, index=None):
        if self.mirror_azimuth:
            views = [replace(v, azimuth=-v.azimuth) for v in views]
        return super().camera_T(views, index)

    def cameras(self, views, size: int | None = None) -> list:
        """The cameras the embeddings of ``views`` describe, read back with Zero123's convention
        (``size`` pixels square; default the prior's resolution)."""
        r0 = self.input_radius if self.input_radius is not None else (views[0].radius or toy_objects.RADIUS)
        size = size or self.image_size
        out = []
        seen = [replace(v, azimuth=-v.azimuth) for v in views] if self.mirror_azimuth else views  # as camera_T sees them
        for T, k in zip(self.camera_T(views).tolist(), self.nearest_input(seen)):  # relative to its input view
            az, el = self.input_angles[k]
            cond = orbit_camera(el, az, r0)
            out.append(Camera(toy_objects.camera_from_zero123_T(T, cond, r0 if self.stable else None),
                              torch.pi * self.fovy / 180, size, size))
        return out

    @torch.no_grad()
    def ground_truth(self, views, size: int | None = None) -> torch.Tensor:
        """Renders [B,3,S,S] of the object at the cameras of ``views``' embeddings, on their backgrounds."""
        return torch.stack([render_mesh(self.mesh, cam, v.background, "torch")["image"]
                            for cam, v in zip(self.cameras(views, size), views)]).to(self.device)

    def x0(self, views) -> torch.Tensor:
        """Scaled latents of the ground truth at each view's camera, on its background."""
        return self.encode(self.ground_truth(views).to(self.dtype), sample=False).float()

    @torch.no_grad()
    def refine(self, images, views, strength, steps):
        """Stage 2's targets: the production SDEdit (whose result, with this denoiser, is the VAE
        round trip of the ground truth whatever the strength); with ``exact_targets`` the ground-truth
        renders themselves at the images' size (a perfect VAE: bench_stage2's ceiling)."""
        if self.exact_targets:
            return self.ground_truth(views, images.shape[-1]).to(images)
        return super().refine(images, views, strength, steps)

    def _eps(self, latents_noisy, t, views):
        a = self.alphas[t].view(-1, 1, 1, 1)
        eps = (latents_noisy.float() - a.sqrt() * self.x0(views)) / (1 - a).sqrt()
        return self.cfg_combine(torch.cat([eps, eps])).to(latents_noisy.dtype)  # both branches: no CFG effect


def oracle_builder(seed: int, mirror_azimuth: bool = False, exact_targets: bool = False):
    """A ``build_guidance`` for trainer.Context: the oracle of object ``seed`` in place of the prior."""
    def build(cfg, device, views=None):
        return OracleZero123.for_object(cfg, device, seed, mirror_azimuth, exact_targets)
    return build
