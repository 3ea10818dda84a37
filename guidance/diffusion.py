"""What every latent-diffusion prior shares: loading, SDS, SDEdit refinement.

Subclasses provide ``_load(path)`` (set ``self.vae``, ``self.unet``, ``self.scheduler``),
``image_size`` (renders are resized to it before encoding), and ``_eps(latents_noisy, t,
views)`` — the classifier-free guided noise prediction for a batch of views.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from guidance import Guidance, ModelNotFoundError


def resolve_dtype(name: str, device) -> torch.dtype:
    if name == "auto":
        return torch.float16 if torch.device(device).type == "cuda" else torch.float32
    return {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}[name]


def quiet_libraries():
    """diffusers / transformers print loading notices through logging; keep errors only."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_component(cls, path: str, subfolder: str, what: str, config_key: str, **kw):
    """``cls.from_pretrained(path, subfolder=...)`` with a one-line error naming the model and how
    to get it (offline machine, wrong id, wrong folder layout)."""
    quiet_libraries()
    local = os.path.isdir(path)
    try:
        return cls.from_pretrained(path, subfolder=subfolder, local_files_only=local or _offline(), **kw)
    except Exception as e:  # transformers/diffusers/hub raise many types (OSError, EntryNotFound, ...)
        if local:
            where = f"the local folder {path} has no usable '{subfolder}' ({type(e).__name__})"
            how = "point it at a folder in diffusers layout (model_index.json + one subfolder per component)"
        else:
            where = f"'{path}' could not be loaded from the hub or the local cache ({type(e).__name__})"
            how = (f"download it with `huggingface-cli download {path}` where the hub is reachable, "
                   f"or set {config_key}=/path/to/local/folder")
        raise ModelNotFoundError(f"{what}: {where}; {how}") from None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


class DiffusionGuidance(Guidance):
    image_size = 256  # renders are resized to this before encoding

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

    def _eps(self, latents_noisy, t, views):
        raise NotImplementedError

    # ----------------------------------------------------------------------- utils
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

    def timestep_range(self, step_ratio: float):
        """[lo, hi] timesteps for this point of training: the upper end moves linearly from
        t_max to t_min when anneal_timestep is on."""
        T = self.num_train_timesteps
        lo = int(self.t_min * T)
        hi_frac = self.t_max - (self.t_max - self.t_min) * step_ratio if self.anneal_timestep else self.t_max
        return lo, max(lo, int(hi_frac * T))

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
        lo, hi = self.timestep_range(step_ratio)
        t = torch.randint(lo, hi + 1, (B,), generator=self.generator).to(self.device)
        with torch.no_grad():
            noise = self.randn(latents.shape).float()
            noisy = self.scheduler.add_noise(latents, noise, t)
            eps = self._eps(noisy.to(self.dtype), t, views).float()
            grad = self.weight(t).view(B, 1, 1, 1) * (eps - noise)
            grad = torch.nan_to_num(grad)
            if self.grad_clip > 0:
                grad = grad.clamp(-self.grad_clip, self.grad_clip)
        target = (latents - grad).detach()
        return 0.5 * F.mse_loss(latents, target, reduction="sum") / B

    # --------------------------------------------------------------------- SDEdit
    @torch.no_grad()
    def refine(self, images, views, strength, steps):
        """SDEdit: encode, noise to ``strength`` of the schedule, denoise with DDIM over the
        ``steps``-step schedule's remaining timesteps, decode. strength 0 returns the input."""
        if strength <= 0:
            return images
        from diffusers import DDIMScheduler

        sched = DDIMScheduler.from_config(self.scheduler.config)
        sched.set_timesteps(steps)
        timesteps = sched.timesteps  # descending
        start = int(round(steps * (1 - min(strength, 1.0))))
        start = min(start, len(timesteps) - 1)
        latents = self.encode(images, sample=False).float()
        noise = self.randn(latents.shape).float()
        latents = sched.add_noise(latents, noise, timesteps[start:start + 1].repeat(latents.shape[0]))
        for t in timesteps[start:]:
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

