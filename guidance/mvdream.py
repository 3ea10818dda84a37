"""Multi-view diffusion priors: MVDream (text-to-3D) and ImageDream (image-to-3D).

Both denoise the four views of an object together, each with its camera, which is what keeps a
single-view prior from painting a face on both sides. Checkpoints are the published single files
(``sd-v2.1-base-4view.pt`` of hub repo ``MVDream/MVDream``, ``sd-v2.1-base-4view-ipmv.pt`` of
``Peng-Wang/ImageDream``), converted on load (``guidance.single_file``); the tokenizer, which the
files do not hold, is Stable Diffusion 2.1's (the same OpenCLIP BPE vocabulary, padded with 0 as
``open_clip.tokenize``).

As the reference's guidance (dreamgaussian ``guidance/mvdream_utils.py``, ``imagedream_utils.py``):
renders at 256x256 (32x32 latents); views in groups of 4, azimuths 90 degrees apart from a random
start at a shared elevation (``sample_views``); the camera input of ``multiview.camera_embedding``;
SDS gradient ``eps_cfg - noise`` without a timestep weight (``sds_weighting: uniform``), the loss
divided by the number of views; the annealed timestep shared by the batch, or (without annealing)
one uniform timestep per object. ImageDream adds a fifth frame per object holding the input
view's clean latent, with a zero camera; its unconditional branch gets zero image features and a
zero latent.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from guidance.diffusion import DiffusionGuidance, common_kwargs
from guidance.loading import ModelLoadError, ModelNotFoundError, _looks_like_path, from_hub
from guidance.multiview import camera_embedding

MVDREAM = ("MVDream/MVDream", "sd-v2.1-base-4view.pt")
IMAGEDREAM = ("Peng-Wang/ImageDream", "sd-v2.1-base-4view-ipmv.pt")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenCLIP's image normalisation (OpenAI's values)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VIEWS = 4  # views per object


def load_tokenizer(path: str, what: str):
    """A CLIPTokenizer from a folder (itself, or its tokenizer/ subfolder) or a hub id's
    tokenizer/ (only those few files are downloaded)."""
    from transformers import CLIPTokenizer

    path = os.path.expanduser(str(path))
    how = "set mv_tokenizer=/path/to/stable-diffusion-2-1-base/tokenizer (or a hub id reachable from here)"
    if os.path.isdir(path):
        folder = os.path.join(path, "tokenizer") if os.path.isdir(os.path.join(path, "tokenizer")) else path
    elif _looks_like_path(path):
        raise ModelNotFoundError(f"{what}: no tokenizer folder at {path}; {how}")
    else:
        from huggingface_hub import snapshot_download

        def fetch(local_only):
            return snapshot_download(path, allow_patterns=["tokenizer/*"], local_files_only=local_only)
        folder = os.path.join(from_hub(fetch, what, f"the tokenizer of '{path}'", how), "tokenizer")
    if not os.path.isfile(os.path.join(folder, "vocab.json")):
        raise ModelNotFoundError(f"{what}: {folder} has no vocab.json (not a CLIP tokenizer); {how}")
    try:
        return CLIPTokenizer.from_pretrained(folder)
    except Exception as e:
        raise ModelLoadError(f"{what}: the tokenizer in {folder} did not load ({type(e).__name__})") from None


class MVDreamGuidance(DiffusionGuidance):
    image_size = 256
    hub = MVDREAM
    name = "MVDream"
    config_key = "mvdream_model"
    image_prompt = False

    def __init__(self, model_path, tokenizer="stabilityai/stable-diffusion-2-1-base", **kw):
        self.tokenizer_path = tokenizer
        self.text = None
        super().__init__(model_path, **kw)

    @classmethod
    def from_config(cls, cfg, device):
        return cls(cfg.mvdream_model, tokenizer=cfg.mv_tokenizer, **common_kwargs(cfg, device, cfg.sd_guidance_scale))

    # ------------------------------------------------------------------ loading
    def _load(self, path):
        from guidance.single_file import load_multiview, read_checkpoint, resolve_checkpoint

        what = f"{self.name} model '{path}'"
        file = resolve_checkpoint(path, self.hub[0], self.hub[1], f"{self.name} model", self.config_key)
        self.tokenizer = load_tokenizer(self.tokenizer_path, what)  # before the (slow) checkpoint read
        vision = self.external_vision(what)
        sd = read_checkpoint(file, what)
        parts, self.unet_config, self.scheduler, self.frames, self.ledger = load_multiview(
            sd, what, self.image_prompt, vision)
        del sd
        for k, m in parts.items():
            setattr(self, k, m)
        vocab = self.text_encoder.config.vocab_size
        if len(self.tokenizer) > vocab:
            raise ModelLoadError(f"{what}: the tokenizer has {len(self.tokenizer)} tokens, the text encoder "
                                 f"{vocab} (not OpenCLIP's tokenizer?)")

    def models(self):
        return [self.vae, self.unet, self.text_encoder]

    def external_vision(self, what):
        return None

    # ------------------------------------------------------------------ conditioning
    @torch.no_grad()
    def prepare(self, prompt=None, negative_prompt="", **_):
        if not prompt:
            raise ValueError("MVDream guidance needs a prompt: set prompt=\"...\"")
        self.text = (self.encode_text([prompt]), self.encode_text([negative_prompt or ""]))
        return self

    def sample_views(self, batch, rng, orbit):
        """4 views per object: a random elevation and start azimuth, then azimuth + 90, 180, 270."""
        views = []
        for obj in range(batch):
            el, az = orbit.draw(rng)
            views += [orbit.view(el, az + 90.0 * i, group=obj) for i in range(VIEWS)]
        return views

    def timesteps(self, step_ratio, batch):
        """As the base class, but without annealing one uniform draw per object (its 4 views share it)."""
        if self.anneal_timestep:
            return super().timesteps(step_ratio, batch)
        lo, hi = self.step_bounds
        t = torch.randint(lo, hi + 1, (batch // VIEWS,), generator=self.generator)
        return t.repeat_interleave(VIEWS).to(self.device)

    def train_step(self, images, views, step_ratio):
        self.check_views(views)
        return super().train_step(images, views, step_ratio)

    def refine(self, images, views, strength, steps):
        self.check_views(views)
        return super().refine(images, views, strength, steps)

    def check_views(self, views):
        if len(views) % VIEWS:
            raise ValueError(f"{self.name} denoises views in groups of {VIEWS}; got {len(views)}")

    def cameras(self, views) -> torch.Tensor:
        return camera_embedding(np.stack([v.camera.c2w for v in views])).to(self.device, self.dtype)

    # ------------------------------------------------------------------ noise prediction
    def _eps(self, latents_noisy, t, views):
        if self.text is None:
            raise RuntimeError(f"{type(self).__name__}.prepare(prompt=...) must be called before use")
        self.check_views(views)
        B = len(views)
        pos, neg = self.text
        enc = torch.cat([pos.expand(B, -1, -1), neg.expand(B, -1, -1)])
        cam = self.cameras(views).repeat(2, 1)
        eps = self.unet(torch.cat([latents_noisy] * 2), torch.cat([t] * 2), encoder_hidden_states=enc,
                        class_labels=cam).sample
        return self.cfg_combine(eps)


class ImageDreamGuidance(MVDreamGuidance):
    hub = IMAGEDREAM
    name = "ImageDream"
    config_key = "imagedream_model"
    image_prompt = True

    def __init__(self, model_path, image_encoder="", **kw):
        self.image = None
        self.image_encoder_path = image_encoder or ""
        super().__init__(model_path, **kw)

    @classmethod
    def from_config(cls, cfg, device):
        return cls(cfg.imagedream_model, tokenizer=cfg.mv_tokenizer, image_encoder=cfg.imagedream_image_encoder,
                   **common_kwargs(cfg, device, cfg.imagedream_guidance_scale))

    def external_vision(self, what):
        """The vision tower from ``imagedream_image_encoder`` where set (else the file's own)."""
        if not self.image_encoder_path:
            return None
        from guidance.single_file import load_external_vision

        return load_external_vision(self.image_encoder_path, what)

    def image_features(self, pixels):
        """The penultimate block's hidden states: the file's tower is built one block short, so
        that is its last hidden state; a whole external tower gives it as hidden_states[-2]."""
        if self.image_encoder_path:
            return self.image_encoder(pixels, output_hidden_states=True).hidden_states[-2]
        return self.image_encoder(pixels).last_hidden_state

    def models(self):
        return [self.vae, self.unet, self.text_encoder, self.image_encoder, self.image_embed]

    def clip_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """OpenCLIP's preprocessing of [1,3,H,W] images in [0,1], as the reference feeds it: 8-bit
        pixels by torchvision's ``to_pil_image`` (``mul(255).byte()``: truncated, not rounded), bicubic
        resize to the vision tower's size (PIL, as torchvision's Resize on a PIL image), centre crop,
        normalise."""
        from PIL import Image

        size = self.image_encoder.config.image_size
        u8 = (x[0].clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        img = Image.fromarray(u8)
        w, h = img.size
        s = size / min(w, h)
        img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
        left, top = (img.size[0] - size) // 2, (img.size[1] - size) // 2
        img = img.crop((left, top, left + size, top + size))
        t = torch.from_numpy(np.asarray(img, np.float32) / 255.0).permute(2, 0, 1)
        t = (t - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]
        return t[None].to(self.device, self.dtype)

    @torch.no_grad()
    def prepare(self, image=None, mask=None, prompt=None, negative_prompt="", **_):
        """The input view (composited on white where ``mask`` is given) at 256x256: its OpenCLIP
        penultimate hidden states (image prompt) and its VAE latent (the fifth frame); the prompt
        may be empty, as in the reference."""
        if image is None:
            raise ValueError("ImageDream guidance needs the input image (mode=image with input=...)")
        img = image if mask is None else image * mask + (1 - mask)
        x = F.interpolate(img[None].to(self.device, torch.float32), (self.image_size, self.image_size),
                          mode="bilinear", align_corners=False)
        feats = self.image_features(self.clip_pixels(x))  # [1, tokens, width]
        self.image = (self.image_embed(feats), self.image_embed(torch.zeros_like(feats)), self.encode(x))
        self.text = (self.encode_text([prompt or ""]), self.encode_text([negative_prompt or ""]))
        return self

    def _eps(self, latents_noisy, t, views):
        if self.image is None:
            raise RuntimeError("ImageDreamGuidance.prepare(image=...) must be called before use")
        self.check_views(views)
        n = len(views) // VIEWS  # objects
        F5 = VIEWS + 1
        ip_pos, ip_neg, ref = self.image
        pos, neg = self.text
        ctx_pos = torch.cat([pos, ip_pos], 1).expand(n * F5, -1, -1)
        ctx_neg = torch.cat([neg, ip_neg], 1).expand(n * F5, -1, -1)

        def frames(x, extra):  # [n*4, ...] -> [n*5, ...] with ``extra`` as each object's fifth frame
            x = x.reshape(n, VIEWS, *x.shape[1:])
            return torch.cat([x, extra.expand(n, 1, *x.shape[2:])], 1).reshape(n * F5, *x.shape[2:])

        lat = torch.cat([frames(latents_noisy, ref.to(latents_noisy.dtype)),
                         frames(latents_noisy, torch.zeros_like(ref, dtype=latents_noisy.dtype))])
        tt = frames(t, t.reshape(n, VIEWS)[:, :1])
        cam = frames(self.cameras(views), torch.zeros(1, 16, device=self.device, dtype=self.dtype))
        eps = self.unet(lat, torch.cat([tt, tt]), encoder_hidden_states=torch.cat([ctx_pos, ctx_neg]),
                        class_labels=cam.repeat(2, 1)).sample
        keep = torch.ones(n, F5, dtype=torch.bool)
        keep[:, -1] = False
        keep = keep.reshape(-1).repeat(2).to(eps.device)
        return self.cfg_combine(eps[keep])
