"""What every latent-diffusion prior shares: loading, SDS, SDEdit refinement.

Subclasses provide ``_load(path)`` (set ``self.vae``, ``self.unet``, ``self.scheduler``),
``image_size`` (renders are resized to it before encoding), and ``_eps(latents_noisy, t,
views)`` — the classifier-free guided noise prediction for a batch of views.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from guidance.base import Guidance
from guidance.loading import quiet_libraries


def resolve_dtype(name: str, device) -> torch.dtype:
    if name == "auto":
        return torch.float16 if torch.device(device).type == "cuda" else torch.float32
    return {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}[name]


class DiffusionGuidance(Guidance):
    image_size = 256  # renders are resized to this before encoding
    loss_batch_mean = True  # divide the SDS loss by the batch size (the reference does for SD, not Zero123)

    def __init__(self, model_path, device="cpu", dtype="auto", guidance_scale=5.0, t_min=0.02, t_max=0.98,
                 anneal_timestep=True, weighting="sds", grad_clip=0.0, attention_slicing=False, seed=0):
        quiet_libraries()
        self.device = torch.device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.guidance_scale = guidance_scale
        self.t_min, self.t_max = t_min, t_max
        self.anneal_timestep = anneal_timestep
        if weighting not in ("sds", "uniform", "snr"):
            raise ValueError(f"sds_weighting must be sds, uniform or snr, got '{weighting}'")
        self.weighting = weighting
        self.grad_clip = grad_clip
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self._load(model_path)
        for m in self.models():
            m.requires_grad_(False)
            m.eval()
            m.to(self.device, self.dtype)
        if attention_slicing and hasattr(self.unet, "set_attention_slice"):
            self.unet.set_attention_slice("auto")
        self.num_train_timesteps = self.scheduler.config.num_train_timesteps
        self.alphas = self.scheduler.alphas_cumprod.to(self.device, torch.float32)

    # -------------------------------------------------------------- subclass hooks
    def _load(self, path):
        raise NotImplementedError

    def models(self):
        return [self.vae, self.unet]

    def load_vae_unet(self, folder: str, what: str, in_channels: int, kind: str):
        """The folder's vae/ and unet/, strictly; the UNet must take ``in_channels`` inputs."""
        from diffusers import AutoencoderKL, UNet2DConditionModel

        from guidance.loading import ModelLoadError, load_library_component

        self.vae = load_library_component(AutoencoderKL, folder, "vae", what)
        self.unet = load_library_component(UNet2DConditionModel, folder, "unet", what)
        if self.unet.config.in_channels != in_channels:
            raise ModelLoadError(f"{what}: the UNet has {self.unet.config.in_channels} input channels, {kind} "
                                 f"needs {in_channels} (is this a {kind} checkpoint?)")

    def _eps(self, latents_noisy, t, views):
        raise NotImplementedError

    # ----------------------------------------------------------------------- utils
    @torch.no_grad()
    def encode_text(self, prompts):
        """Text-conditioned priors (``self.tokenizer``, ``self.text_encoder``): the encoder's last
        hidden states of the prompts, padded / truncated to the tokenizer's 77 tokens."""
        limit = self.tokenizer.model_max_length
        for prompt, ids in zip(prompts, self.tokenizer(list(prompts), truncation=False).input_ids):
            if len(ids) > limit:  # the encoder reads 77 tokens, start and end included: say what is dropped
                dropped = self.tokenizer.decode(ids[limit - 1:-1], skip_special_tokens=True).strip()
                self.warn(f"the prompt is {len(ids)} tokens long and the text encoder reads {limit} (start and end "
                          f"included): '{dropped[:60]}{'...' if len(dropped) > 60 else ''}' is ignored")
        tok = self.tokenizer(prompts, padding="max_length", max_length=limit, truncation=True, return_tensors="pt")
        return self.text_encoder(tok.input_ids.to(self.device))[0].to(self.dtype)

    def randn(self, shape):
        return torch.randn(shape, generator=self.generator).to(self.device, self.dtype)

    def encode(self, images: torch.Tensor, sample: bool = True) -> torch.Tensor:
        """Images [B,3,H,W] in [0,1] -> scaled latents."""
        x = F.interpolate(images, (self.image_size, self.image_size), mode="bilinear", align_corners=False)
        dist = self.vae.encode((2 * x - 1).to(self.dtype)).latent_dist
        z = dist.mean + dist.std * self.randn(dist.mean.shape) if sample else dist.mean
        return z * self.vae.config.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        x = self.vae.decode((latents / self.vae.config.scaling_factor).to(self.dtype)).sample
        return (x.float() / 2 + 0.5).clamp(0, 1)

    @property
    def step_bounds(self):
        """[min_step, max_step] of the SDS timesteps: int(t_min * T), int(t_max * T) (20, 980)."""
        T = self.num_train_timesteps
        return int(self.t_min * T), int(self.t_max * T)

    def timesteps(self, step_ratio: float, batch: int) -> torch.Tensor:
        """SDS timesteps for this point of training, as the reference: with annealing the
        deterministic t = round((1 - step_ratio) * T) clipped to the bounds, shared by the batch;
        without it, uniform in the bounds (inclusive)."""
        lo, hi = self.step_bounds
        if self.anneal_timestep:
            t = int(np.clip(np.round((1 - step_ratio) * self.num_train_timesteps), lo, hi))
            return torch.full((batch,), t, dtype=torch.long, device=self.device)
        return torch.randint(lo, hi + 1, (batch,), generator=self.generator).to(self.device)

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        a = self.alphas[t]
        if self.weighting == "sds":
            return 1 - a
        if self.weighting == "snr":
            return torch.sqrt(a / (1 - a))
        return torch.ones_like(a)

    # ------------------------------------------------------------------------ SDS
    def train_step(self, images, views, step_ratio):
        """Score distillation: the gradient w(t) (eps_pred - eps) is injected into the latents
        through an MSE to a detached target, so loss.backward() carries it to ``images``."""
        B = images.shape[0]
        latents = self.encode(images).float()
        t = self.timesteps(step_ratio, B)
        with torch.no_grad():
            noise = self.randn(latents.shape).float()
            noisy = self.scheduler.add_noise(latents, noise, t)
            eps = self._eps(noisy.to(self.dtype), t, views).float()
            grad = self.weight(t).view(B, 1, 1, 1) * (eps - noise)
            grad = torch.nan_to_num(grad)
            if self.grad_clip > 0:
                grad = grad.clamp(-self.grad_clip, self.grad_clip)
        target = (latents - grad).detach()
        loss = 0.5 * F.mse_loss(latents, target, reduction="sum")
        return loss / B if self.loss_batch_mean else loss

    # --------------------------------------------------------------------- SDEdit
    @torch.no_grad()
    def refine(self, images, views, strength, steps):
        """SDEdit, as the reference: set a ``steps``-step DDIM schedule, skip its first
        int(steps * strength) timesteps (truncated), noise the encoded render to the next one and
        denoise from there; decode. strength 0 denoises from pure noise; a strength that skips
        the whole schedule returns the input."""
        from diffusers import DDIMScheduler

        start = int(steps * strength)
        if start >= steps:
            return images
        sched = DDIMScheduler.from_config(self.scheduler.config)
        sched.set_timesteps(steps)
        timesteps = sched.timesteps  # descending
        latents = self.encode(images, sample=True).float()
        noise = self.randn(latents.shape).float()
        if start <= 0:
            latents = noise
        else:
            latents = sched.add_noise(latents, noise, timesteps[start:start + 1].repeat(latents.shape[0]))
        for t in timesteps[max(start, 0):]:
            tb = t.repeat(latents.shape[0]).to(self.device)
            eps = self._eps(latents.to(self.dtype), tb, views).float()
            latents = sched.step(eps, t, latents).prev_sample
        out = self.decode(latents)
        return F.interpolate(out, images.shape[-2:], mode="bilinear", align_corners=False)

    def cfg_combine(self, eps):
        cond, uncond = eps.chunk(2)
        return uncond + self.guidance_scale * (cond - uncond)


def common_kwargs(cfg, device, guidance_scale):
    return dict(device=device, dtype=cfg.guidance_dtype, guidance_scale=guidance_scale, t_min=cfg.t_min,
                t_max=cfg.t_max, anneal_timestep=cfg.anneal_timestep, weighting=cfg.sds_weighting,
                grad_clip=cfg.grad_clip, attention_slicing=cfg.attention_slicing, seed=cfg.seed)

