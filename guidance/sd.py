"""Stable Diffusion 2.1 guidance (text-to-3D), from the diffusers-format checkpoint
(``stabilityai/stable-diffusion-2-1-base`` or a local folder). Its ``model_index.json`` names a
``StableDiffusionPipeline`` with vae/ (AutoencoderKL), unet/ (UNet2DConditionModel), text_encoder/
(CLIPTextModel), tokenizer/ (CLIPTokenizer), scheduler/ (``PNDMScheduler`` in its
scheduler_config.json; DDIM is built from the same config), feature_extractor/ and safety_checker/
(neither used). SDS at 512x512 renders (64x64 latents) with classifier-free guidance (the
reference's scale: 100); optional view-dependent prompts (", front view" / ", side view" / ", back view")."""
from __future__ import annotations

import torch
from diffusers import DDIMScheduler

from guidance.diffusion import DiffusionGuidance, common_kwargs
from guidance.loading import (ModelLoadError, load_library_component, load_processor, load_scheduler, model_index,
                              resolve_folder)

DIRECTIONS = ("front", "side", "back")


def direction_of(azimuth: float | None) -> int:
    """0 front (|azimuth| < 60), 2 back (|azimuth| > 120), else 1 side; azimuth 0 faces the front."""
    if azimuth is None:
        return 0
    a = abs((azimuth + 180.0) % 360.0 - 180.0)
    return 0 if a < 60 else (2 if a > 120 else 1)


class StableDiffusionGuidance(DiffusionGuidance):
    image_size = 512

    def __init__(self, model_path, view_dependent=True, **kw):
        self.view_dependent = view_dependent
        self.text = None
        super().__init__(model_path, **kw)

    @classmethod
    def from_config(cls, cfg, device):
        return cls(cfg.sd_model, view_dependent=cfg.view_dependent_prompt,
                   **common_kwargs(cfg, device, cfg.sd_guidance_scale))

    def _load(self, path):
        from transformers import CLIPTextModel, CLIPTokenizer

        what = f"Stable Diffusion model '{path}'"
        folder = resolve_folder(path, "Stable Diffusion model", "sd_model")
        index = model_index(folder, what)
        missing = [c for c in ("vae", "unet", "text_encoder", "tokenizer", "scheduler") if c not in index]
        if missing:
            raise ModelLoadError(f"{what}: model_index.json lists no '{missing[0]}' (not a Stable Diffusion pipeline?)")
        self.load_vae_unet(folder, what, 4, "Stable Diffusion")
        self.text_encoder = load_library_component(CLIPTextModel, folder, "text_encoder", what)
        self.tokenizer = load_processor(CLIPTokenizer, folder, "tokenizer", "tokenizer_config.json", what)
        self.scheduler = load_scheduler(DDIMScheduler, folder, what)

    def models(self):
        return [self.vae, self.unet, self.text_encoder]

    @torch.no_grad()
    def prepare(self, prompt=None, negative_prompt="", **_):
        if not prompt:
            raise ValueError("Stable Diffusion guidance needs a prompt: set prompt=\"...\" "
                             "(or put <name>_caption.txt beside the input image)")
        prompts = [f"{prompt}, {d} view" for d in DIRECTIONS] if self.view_dependent else [prompt] * 3
        self.text = (self.encode_text(prompts), self.encode_text([negative_prompt or ""] * 3))
        return self

    def _eps(self, latents_noisy, t, views):
        if self.text is None:
            raise RuntimeError("StableDiffusionGuidance.prepare(prompt=...) must be called before use")
        pos, neg = self.text
        idx = torch.tensor([direction_of(v.azimuth) for v in views], device=self.device)
        enc = torch.cat([pos[idx], neg[idx]])
        eps = self.unet(torch.cat([latents_noisy] * 2), torch.cat([t] * 2), encoder_hidden_states=enc).sample
        return self.cfg_combine(eps)
