"""Zero123-XL and Stable-Zero123 guidance (image-to-3D), from diffusers-format checkpoints.

Two published folder layouts load (detected from the folder's own files, see ``load_projection``):

* ``ashawkey/zero123-xl-diffusers`` / ``ashawkey/stable-zero123-diffusers`` (the configs' defaults):
  ``model_index.json`` of a ``Zero123Pipeline`` with vae/ (AutoencoderKL), unet/
  (UNet2DConditionModel, 8 input channels: noisy latents + input-view latents), image_encoder/
  (CLIPVisionModelWithProjection), feature_extractor/ (CLIPImageProcessor), scheduler/ (DDIM) and
  clip_camera_projection/ (``CLIPCameraProjection``: config ``embedding_dim`` 768 and
  ``additional_embeddings`` 4, weights ``proj.weight`` [768, 772] and ``proj.bias`` [768]);
* the zero1to3 community layout (kxic's conversion): the same, with cc_projection/ (``CCProjection``:
  config ``in_channel`` 772 and ``out_channel`` 768, weights ``projection.weight`` / ``projection.bias``).

Relative camera T of a target view to its input view (``relative_camera``; angles in degrees):
  Zero123:        [rad(d_elevation), sin(rad(d_azimuth)), cos(rad(d_azimuth)), d_radius]
  Stable-Zero123: [rad(d_elevation), sin(rad(d_azimuth)), cos(rad(d_azimuth)), rad(90 + input elevation)]
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

from guidance.diffusion import DiffusionGuidance, common_kwargs
from guidance.loading import (ModelLoadError, first_mismatch, load_library_component, load_processor, load_scheduler,
                              model_index, read_json, read_state_dict, resolve_folder, weight_files)

# subfolder -> (class named in its config.json, (in, out) sizes from that config, weight-name prefix)
PROJECTION_LAYOUTS = {
    "clip_camera_projection": ("CLIPCameraProjection",
                               lambda c: (c.get("embedding_dim", 768) + c.get("additional_embeddings", 4),
                                          c.get("embedding_dim", 768)), "proj"),
    "cc_projection": ("CCProjection", lambda c: (c.get("in_channel", 772), c.get("out_channel", 768)), "projection"),
}


class CameraProjection(torch.nn.Module):
    """Projects [CLIP image embedding, camera embedding] back to the CLIP embedding size: one
    Linear, whichever layout its weights came from."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.linear = torch.nn.Linear(in_features, out_features)

    def forward(self, x):
        return self.linear(x)


def load_projection(folder: str, index: dict, what: str) -> CameraProjection:
    """The camera projection of either published layout, chosen by the folder's model_index.json
    (or, where it names neither, by which subfolder exists); every weight must match its config."""
    subs = [s for s in PROJECTION_LAYOUTS if s in index] or \
        [s for s in PROJECTION_LAYOUTS if os.path.isdir(os.path.join(folder, s))]
    if not subs:
        raise ModelLoadError(f"{what}: {folder} has no camera projection (clip_camera_projection/ or cc_projection/); "
                             "is this a Zero123 checkpoint?")
    sub = subs[0]
    cls_name, sizes, prefix = PROJECTION_LAYOUTS[sub]
    cfg = read_json(os.path.join(folder, sub, "config.json"), what)
    if cfg.get("_class_name", cls_name) != cls_name:
        raise ModelLoadError(f"{what}: {sub}/config.json names class '{cfg.get('_class_name')}', expected '{cls_name}'")
    try:
        n_in, n_out = (int(x) for x in sizes(cfg))
    except (TypeError, ValueError):
        raise ModelLoadError(f"{what}: {sub}/config.json has non-integer sizes: {cfg}") from None
    files = weight_files(folder, sub)
    if not files:
        raise ModelLoadError(f"{what}: component '{sub}' has no weights (*.safetensors or *.bin) in {folder}")
    try:
        sd = read_state_dict(files)
    except Exception as e:
        raise ModelLoadError(f"{what}: component '{sub}' weights could not be read ({type(e).__name__}: "
                             f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''})") from None
    expected = {f"{prefix}.weight": (n_out, n_in), f"{prefix}.bias": (n_out,)}
    problem = first_mismatch(expected, {k: tuple(v.shape) for k, v in sd.items()})
    if problem:
        raise ModelLoadError(f"{what}: component '{sub}' ({cls_name}) does not match its config.json: {problem}")
    proj = CameraProjection(n_in, n_out)
    with torch.no_grad():
        proj.linear.weight.copy_(sd[f"{prefix}.weight"])
        proj.linear.bias.copy_(sd[f"{prefix}.bias"])
    return proj


def checkpoint_resolution(folder: str, what: str, default: int = 256) -> int:
    """The render size a Zero123 checkpoint works at: its vae/config.json ``sample_size`` where the
    file states it (256 in the published folders; 64 in models/toy-zero123), else the reference's 256."""
    size = read_json(os.path.join(folder, "vae", "config.json"), what).get("sample_size")
    if isinstance(size, (list, tuple)):
        size = size[0] if size else None
    if size is None:
        return default
    if not isinstance(size, int) or size < 8 or size % 8:
        raise ModelLoadError(f"{what}: vae/config.json has sample_size {size!r}; expected a positive multiple of 8 "
                             "(or set zero123_resolution=)")
    return size


def relative_camera(d_elevation, d_azimuth, d_radius, input_elevation, stable: bool) -> torch.Tensor:
    """[B, 4] relative cameras T (see module docstring); ``input_elevation``: one for all rows, or one
    per row (each view relative to its own input view)."""
    rows = []
    if not isinstance(input_elevation, (list, tuple)):
        input_elevation = [input_elevation] * len(d_elevation)
    for de, da, dr, el in zip(d_elevation, d_azimuth, d_radius, input_elevation):
        last = math.radians(90 + el) if stable else dr
        rows.append([math.radians(de), math.sin(math.radians(da)), math.cos(math.radians(da)), last])
    return torch.tensor(rows, dtype=torch.float32)


class Zero123Guidance(DiffusionGuidance):
    image_size = 256
    loss_batch_mean = False  # the reference's Zero123 SDS loss is summed over the batch

    def __init__(self, model_path, stable=False, resolution=0, **kw):
        self.stable = stable
        self.embeddings = None
        self.input_angles = []  # (azimuth, elevation) of each input view, the first at azimuth 0 (prepare)
        self.resolution = int(resolution)
        if self.resolution < 0:
            raise ValueError(f"zero123_resolution must be 0 (the checkpoint's own) or a positive size, got {resolution}")
        super().__init__(model_path, **kw)

    @classmethod
    def from_config(cls, cfg, device):
        stable = bool(cfg.stable_zero123) or "stable" in str(cfg.guidance_model).lower()
        return cls(cfg.guidance_model, stable=stable, resolution=cfg.zero123_resolution,
                   **common_kwargs(cfg, device, cfg.guidance_scale))

    def _load(self, path):
        from diffusers import DDIMScheduler
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        name = "Stable-Zero123" if self.stable else "Zero123"
        what = f"{name} model '{path}'"
        folder = resolve_folder(path, f"{name} model", "guidance_model")
        index = model_index(folder, what)
        self.load_vae_unet(folder, what, 8, "Zero123")
        self.image_size = self.resolution or checkpoint_resolution(folder, what)
        self.image_encoder = load_library_component(CLIPVisionModelWithProjection, folder, "image_encoder", what)
        self.cc_projection = load_projection(folder, index, what)
        if self.cc_projection.linear.in_features != self.image_encoder.config.projection_dim + 4:
            raise ModelLoadError(f"{what}: the camera projection takes {self.cc_projection.linear.in_features} inputs, "
                                 f"the image encoder gives {self.image_encoder.config.projection_dim} + 4 camera values")
        self.feature_extractor = load_processor(CLIPImageProcessor, folder, "feature_extractor",
                                                "preprocessor_config.json", what)
        self.scheduler = load_scheduler(DDIMScheduler, folder, what)

    def models(self):
        return [self.vae, self.unet, self.image_encoder, self.cc_projection]

    def clip_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """CLIP input of images [B,3,H,W] in [0,1]: 8-bit images (x * 255, truncated, as a PIL
        conversion does) through the checkpoint's own CLIPImageProcessor."""
        u8 = (x.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        px = self.feature_extractor(images=list(u8), return_tensors="pt").pixel_values
        return px.to(self.device, self.dtype)

    @torch.no_grad()
    def prepare(self, image=None, mask=None, elevation=0.0, radius=None, inputs=None, **_):
        """Condition on the input view: ``image`` [3,H,W] in [0,1] (composited on white where
        ``mask`` is given), its elevation (degrees) and camera distance. As the reference: the
        view at 256x256 (bilinear), CLIP embedding of its 8-bit pixels, and a VAE posterior sample.

        ``inputs``: several views of the object (dicts of image, mask, azimuth relative to the
        first, elevation; the first is ``image``'s view): each is embedded so, and every sampled
        view is conditioned on the input view nearest in angle, with its camera relative to that
        view (``nearest_input``)."""
        if image is None and not inputs:
            raise ValueError("Zero123 guidance needs the input image (mode=image with input=...)")
        inputs = list(inputs) if inputs else [{"image": image, "mask": mask, "azimuth": 0.0, "elevation": elevation}]
        clips, lats = [], []
        for view in inputs:
            img = view["image"] if view.get("mask") is None else view["image"] * view["mask"] + (1 - view["mask"])
            x = F.interpolate(img[None].to(self.device, torch.float32), (self.image_size, self.image_size),
                              mode="bilinear", align_corners=False)
            clips.append(self.image_encoder(self.clip_pixels(x)).image_embeds)  # [1, D]
            lats.append(self.encode(x, sample=True) / self.vae.config.scaling_factor)  # unscaled, as Zero123
        self.embeddings = (torch.cat(clips), torch.cat(lats))
        self.input_angles = [(float(v["azimuth"]), float(v["elevation"])) for v in inputs]
        self.input_radius = radius
        return self

    def _input_cosines(self, view) -> list:
        """The cosine of the angle between ``view``'s viewing direction and each input view's, on
        the orbit sphere."""
        def direction(az, el):
            a, e = math.radians(az), math.radians(el)
            return (math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a))

        d = direction(view.azimuth, view.elevation)
        return [sum(x * y for x, y in zip(d, direction(*a))) for a in self.input_angles]

    def nearest_input(self, views) -> list:
        """For each view, the index of the input view nearest in angle (the angle between the two
        viewing directions on the orbit sphere; 0 with one input)."""
        if len(self.input_angles) == 1:
            return [0] * len(views)
        out = []
        for v in views:
            cos = self._input_cosines(v)
            out.append(max(range(len(cos)), key=lambda k: cos[k]))
        return out

    def camera_T(self, views, index=None) -> torch.Tensor:
        """[B, 4] relative cameras T of ``views`` to input views ``index`` (one per view;
        default each view's nearest, ``nearest_input``), as fed to the UNet."""
        if self.embeddings is None:
            raise RuntimeError("Zero123Guidance.prepare(image=...) must be called before use")
        r0 = self.input_radius if self.input_radius is not None else (views[0].radius or 0.0)
        index = self.nearest_input(views) if index is None else index
        ref = [self.input_angles[k] for k in index]
        return relative_camera([v.elevation - el for v, (_, el) in zip(views, ref)],
                               [v.azimuth - az for v, (az, _) in zip(views, ref)],
                               [(v.radius or r0) - r0 for v in views], [el for _, el in ref], self.stable)

    def conditioning(self, views, index=None):
        """The UNet's conditioning of ``views`` on input views ``index`` (default the nearest):
        projected CLIP embedding with the relative camera [B,1,D], and the input's latents."""
        index = self.nearest_input(views) if index is None else index
        T = self.camera_T(views, index).to(self.device, self.dtype)[:, None, :]
        clip_emb, vae_lat = self.embeddings
        idx = torch.tensor(index, device=vae_lat.device)
        cc = self.cc_projection(torch.cat([clip_emb[idx][:, None, :], T], -1))  # [B,1,D]
        return cc, vae_lat[idx]

    def _eps(self, latents_noisy, t, views):
        cc, vae_lat = self.conditioning(views)
        x_in = torch.cat([latents_noisy] * 2)
        cond = torch.cat([vae_lat, torch.zeros_like(vae_lat)])
        enc = torch.cat([cc, torch.zeros_like(cc)])
        eps = self.unet(torch.cat([x_in, cond], 1), torch.cat([t] * 2), encoder_hidden_states=enc).sample
        return self.cfg_combine(eps)
