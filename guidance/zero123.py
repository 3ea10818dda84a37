"""Zero123-XL and Stable-Zero123 guidance (image-to-3D), from diffusers-format checkpoints.

Layout of ``ashawkey/zero123-xl-diffusers`` / ``ashawkey/stable-zero123-diffusers`` (or a local
folder): vae/ (AutoencoderKL), unet/ (UNet2DConditionModel, 8 input channels: noisy latents +
input-view latents), image_encoder/ (CLIPVisionModelWithProjection), feature_extractor/
(CLIPImageProcessor), clip_camera_projection/ (a Linear 772 -> 768 mixing the CLIP image
embedding with the relative camera), scheduler/.

Camera embedding of a target view relative to the input view (angles in degrees):
  Zero123:        [rad(d_elevation), sin(rad(d_azimuth)), cos(rad(d_azimuth)), d_radius]
  Stable-Zero123: [rad(d_elevation), sin(rad(d_azimuth)), cos(rad(d_azimuth)), rad(90 + input elevation)]
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from guidance.diffusion import DiffusionGuidance, common_kwargs, load_component

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class CCProjection(ModelMixin, ConfigMixin):
    """Projects [CLIP image embedding, camera embedding] back to the CLIP embedding size."""

    @register_to_config
    def __init__(self, in_channel=772, out_channel=768):
        super().__init__()
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.projection = torch.nn.Linear(in_channel, out_channel)

    def forward(self, x):
        return self.projection(x)


def camera_embedding(d_elevation, d_azimuth, d_radius, input_elevation, stable: bool) -> torch.Tensor:
    """[B, 4] camera embeddings (see module docstring)."""
    rows = []
    for de, da, dr in zip(d_elevation, d_azimuth, d_radius):
        last = math.radians(90 + input_elevation) if stable else dr
        rows.append([math.radians(de), math.sin(math.radians(da)), math.cos(math.radians(da)), last])
    return torch.tensor(rows, dtype=torch.float32)


class Zero123Guidance(DiffusionGuidance):
    image_size = 256

    def __init__(self, model_path, stable=False, **kw):
        self.stable = stable
        self.embeddings = None
        super().__init__(model_path, **kw)

    @classmethod
    def from_config(cls, cfg, device):
        stable = bool(cfg.stable_zero123) or "stable" in str(cfg.guidance_model).lower()
        return cls(cfg.guidance_model, stable=stable, **common_kwargs(cfg, device, cfg.guidance_scale))

    def _load(self, path):
        from transformers import CLIPVisionModelWithProjection

        name = "Stable-Zero123" if self.stable else "Zero123"
        kw = dict(what=f"{name} model", config_key="guidance_model")
        self.vae = load_component(AutoencoderKL, path, "vae", **kw)
        self.unet = load_component(UNet2DConditionModel, path, "unet", **kw)
        if self.unet.config.in_channels != 8:
            from guidance import ModelNotFoundError

            raise ModelNotFoundError(f"{name} model at {path}: the UNet has {self.unet.config.in_channels} input "
                                     "channels, Zero123 needs 8 (is this a Zero123 checkpoint?)")
        self.image_encoder = load_component(CLIPVisionModelWithProjection, path, "image_encoder", **kw)
        try:
            self.cc_projection = load_component(CCProjection, path, "clip_camera_projection", **kw)
        except Exception:
            self.cc_projection = load_component(CCProjection, path, "cc_projection", **kw)
        self.scheduler = load_component(DDIMScheduler, path, "scheduler", **kw)
        self.clip_size = self.image_encoder.config.image_size

    def models(self):
        return [self.vae, self.unet, self.image_encoder, self.cc_projection]

    @torch.no_grad()
    def prepare(self, image=None, mask=None, elevation=0.0, radius=None, **_):
        """Condition on the input view: ``image`` [3,H,W] in [0,1] (composited on white where
        ``mask`` is given), its elevation (degrees) and camera distance."""
        if image is None:
            raise ValueError("Zero123 guidance needs the input image (mode=image with input=...)")
        img = image if mask is None else image * mask + (1 - mask)
        img = img[None].to(self.device, torch.float32)
        x = F.interpolate(img, (self.clip_size, self.clip_size), mode="bicubic", align_corners=False).clamp(0, 1)
        mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1)
        clip_emb = self.image_encoder(((x - mean) / std).to(self.dtype)).image_embeds  # [1, D]
        vae_lat = self.encode(img, sample=False) / self.vae.config.scaling_factor  # unscaled, as Zero123
        self.embeddings = (clip_emb, vae_lat)
        self.input_elevation = float(elevation)
        self.input_radius = radius
        return self

    def conditioning(self, views):
        if self.embeddings is None:
            raise RuntimeError("Zero123Guidance.prepare(image=...) must be called before use")
        clip_emb, vae_lat = self.embeddings
        B = len(views)
        r0 = self.input_radius if self.input_radius is not None else (views[0].radius or 0.0)
        T = camera_embedding([v.elevation - self.input_elevation for v in views], [v.azimuth for v in views],
                             [(v.radius or r0) - r0 for v in views], self.input_elevation, self.stable)
        T = T.to(self.device, self.dtype)[:, None, :]
        cc = self.cc_projection(torch.cat([clip_emb[:, None, :].repeat(B, 1, 1), T], -1))  # [B,1,D]
        return cc, vae_lat.repeat(B, 1, 1, 1)

    def _eps(self, latents_noisy, t, views):
        cc, vae_lat = self.conditioning(views)
        x_in = torch.cat([latents_noisy] * 2)
        cond = torch.cat([vae_lat, torch.zeros_like(vae_lat)])
        enc = torch.cat([cc, torch.zeros_like(cc)])
        eps = self.unet(torch.cat([x_in, cond], 1), torch.cat([t] * 2), encoder_hidden_states=enc).sample
        return self.cfg_combine(eps)
