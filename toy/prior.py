"""The toy Zero123: its architecture in the published Zero123 layout, its data, its training loops,
its export (the library of ``toy/train_prior.py``, ``toy/finetune_decoder.py`` and the toy benchmarks).

A few M parameters, 64 px renders, 8x8x4 latents; the layout is ``ashawkey/zero123-xl-diffusers``'s
(vae/, unet/ with 8 input channels, image_encoder/, feature_extractor/, clip_camera_projection/,
scheduler/, model_index.json), which ``guidance_model=`` loads as it loads the real model.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch

from io_utils import save_json
from toy import objects as toy_objects

RESOLUTION = 64  # render size of the toy prior
LATENT = 8  # latent side (the UNet's sample_size)
CLIP_SIZE = 32  # the image encoder's input size (feature_extractor resizes to it)
# the VAE: one encoder block per halving, 64 px -> 8x8x4 latents (3 downsamplings)
VAE_CONFIG = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16, 32, 64),
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  layers_per_block=1, norm_num_groups=8, act_fn="silu", sample_size=RESOLUTION,
                  mid_block_add_attention=False)
UNET_CONFIG = dict(sample_size=LATENT, in_channels=8, out_channels=4, block_out_channels=(32, 64, 128),
                   layers_per_block=2, down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=64,
                   attention_head_dim=8, norm_num_groups=16)
CLIP_CONFIG = dict(hidden_size=64, image_size=CLIP_SIZE, intermediate_size=128, num_attention_heads=4,
                   num_hidden_layers=2, patch_size=8, projection_dim=64, hidden_act="quick_gelu")
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
# the DDIM schedule of zero123-xl-diffusers' scheduler/scheduler_config.json
SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                 num_train_timesteps=1000, prediction_type="epsilon", set_alpha_to_one=False, steps_offset=1)


def progress(it, desc, total=None, initial=0):
    from tqdm import tqdm

    return tqdm(it, desc=desc, total=total, initial=initial, dynamic_ncols=True, file=sys.stderr)


def save_atomic(obj, path):
    """``torch.save`` to a temporary name, renamed: a killed run never leaves half a checkpoint."""
    torch.save(obj, path + ".tmp")
    os.replace(path + ".tmp", path)


def build_models(seed: int):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    vae = AutoencoderKL(**VAE_CONFIG)
    with torch.no_grad():  # start with a near-deterministic posterior (log-variance -8): learning is much faster
        vae.encoder.conv_out.weight[VAE_CONFIG["latent_channels"]:] = 0
        vae.encoder.conv_out.bias[VAE_CONFIG["latent_channels"]:] = -8.0
    unet = UNet2DConditionModel(**UNET_CONFIG)
    clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_CONFIG))
    emb = CLIP_CONFIG["projection_dim"]
    proj = torch.nn.Linear(emb + 4, emb)
    with torch.no_grad():  # start as Zero123 does: the CLIP embedding passed through, the camera ignored
        proj.weight.zero_()
        proj.weight[:, :emb] = torch.eye(emb)
        proj.bias.zero_()
    return vae, unet, clip, proj


def load_init(folder: str):
    """(vae, unet, clip, proj, record) of a model folder this script wrote, as it was exported."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import load_file
    from transformers import CLIPVisionModelWithProjection

    with open(os.path.join(folder, "training.json")) as fh:  # train_prior.py checked it is there
        record = json.load(fh)
    vae = AutoencoderKL.from_pretrained(os.path.join(folder, "vae"))
    unet = UNet2DConditionModel.from_pretrained(os.path.join(folder, "unet"))
    clip = CLIPVisionModelWithProjection.from_pretrained(os.path.join(folder, "image_encoder"))
    sd = load_file(os.path.join(folder, "clip_camera_projection", "diffusion_pytorch_model.safetensors"))
    proj = torch.nn.Linear(sd["proj.weight"].shape[1], sd["proj.weight"].shape[0])
    proj.load_state_dict({"weight": sd["proj.weight"], "bias": sd["proj.bias"]})
    if unet.config.in_channels != 8:  # train_prior.py checked the VAE's resolution
        raise ValueError(f"--init-from {folder}: not a toy Zero123 (unet in_channels {unet.config.in_channels}, "
                         "not 8)")
    return vae, unet, clip, proj, record


def init_unet_hours(record: dict) -> float:
    """UNet training hours behind a model folder's record (its own init_from's first), evaluations
    excluded where the record says (``unet_training_seconds``; older records: each run's UNet wall
    time, which counted its learning-curve evaluations too)."""
    before = init_unet_hours(record["init_from"]["record"]) if "init_from" in record else 0.0
    if "unet_training_seconds" in record:
        return before + record["unet_training_seconds"] / 3600
    return before + sum(r["seconds"]["unet"] for r in record.get("runs", [])) / 3600


def sign_init(proj, norm: float, seed: int):
    """The camera projection's sin(d_azimuth) column (input 1 of the 4 camera inputs after the CLIP
    embedding) set to a fixed random direction of ``norm``: from a zero column the UNet barely sees
    left and right apart, so it has little gradient to learn to use them (measured, BENCHMARKS.md)."""
    g = torch.Generator().manual_seed(seed + 7)
    v = torch.randn(proj.weight.shape[0], generator=g)
    with torch.no_grad():
        proj.weight[:, proj.weight.shape[1] - 3] = v * (norm / v.norm())


def feature_extractor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": CLIP_SIZE}, crop_size={"height": CLIP_SIZE, "width": CLIP_SIZE},
                              do_resize=True, do_center_crop=True, do_normalize=True, image_mean=CLIP_MEAN,
                              image_std=CLIP_STD, resample=3, do_convert_rgb=True)


# ---------------------------------------------------------------------------------- 1. data
def make_data(path: str, objects: int, views: int, resolution: int = RESOLUTION):
    """uint8 renders [N,V,3,H,W] (H = W = ``resolution``) of objects 0..N-1 and their c2w [N,V,4,4]."""
    if os.path.isfile(path):
        data = torch.load(path, weights_only=True)
        if data["images"].shape[:2] == (objects, views) and data["images"].shape[-1] == resolution:
            return data
    images = torch.zeros(objects, views, 3, resolution, resolution, dtype=torch.uint8)
    c2w = torch.zeros(objects, views, 4, 4)
    for i in progress(range(objects), "data"):
        assert i in toy_objects.TRAIN_SEEDS
        mesh = toy_objects.make_object(i)
        cams = toy_objects.object_cameras(i, views, resolution)
        rgb, _ = toy_objects.render_views(mesh, [c for _, _, c in cams])
        images[i] = (rgb.clamp(0, 1) * 255).to(torch.uint8)  # truncated, as the guidance's 8-bit CLIP input
        c2w[i] = torch.from_numpy(np.stack([c.c2w for _, _, c in cams]))
    data = {"images": images, "c2w": c2w}
    save_atomic(data, path)
    return data


# ----------------------------------------------------------------------------------- 2. VAE
def train_vae(vae, images, steps, batch, lr, work, seed, stop=None, part="all"):
    """The VAE over ``steps`` steps (cosine learning rate), resumed from ``work``/vae.pt; ``stop``:
    return after that step (checkpointed) instead, to evaluate along the way. ``part="decoder"``:
    the encoder frozen, only the decoder trained (as Stability's sd-vae-ft-mse fine-tuned SD's VAE):
    the latent space, and so a UNet trained on it, stays valid."""
    if part not in ("all", "decoder"):
        raise ValueError(f"part must be 'all' or 'decoder', not {part!r}")
    ckpt = os.path.join(work, "vae.pt")
    trained = (list(vae.parameters()) if part == "all" else
               list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters()))
    opt = torch.optim.AdamW(trained, lr=lr, weight_decay=0.0)
    state = {"step": 0, "losses": []}
    if os.path.isfile(ckpt):
        state = torch.load(ckpt, weights_only=False)
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
    flat = images.reshape(-1, *images.shape[2:])
    g = torch.Generator().manual_seed(seed + 1)
    if "rng" in state:
        g.set_state(state["rng"])
    vae.train()
    if part == "decoder":  # the frozen half runs as at inference
        vae.encoder.eval()
        vae.quant_conv.eval()
    end = steps if stop is None else min(stop, steps)
    bar = progress(range(state["step"], end), "vae", total=steps, initial=state["step"])
    for step in bar:
        lr_now = lr * 0.5 * (1 + math.cos(math.pi * step / max(steps, 1)))
        for group in opt.param_groups:
            group["lr"] = lr_now
        x = flat[torch.randint(len(flat), (batch,), generator=g)].float() / 127.5 - 1
        with torch.set_grad_enabled(part == "all"):
            post = vae.encode(x).latent_dist
            z = post.sample()
        y = vae.decode(z).sample
        weight = 1 + 9 * (x < 0.98).any(1, keepdim=True).float()  # the object's pixels 10x the white background
        rec = (weight * ((y - x) ** 2 + 0.1 * (y - x).abs())).mean()
        loss = rec + (1e-6 * post.kl().mean() if part == "all" else 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["losses"].append(rec.item())
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(rec=f"{rec.item():.4f}")
        if (step + 1) % 100 == 0 or step + 1 == end:
            state.update(step=step + 1, model=vae.state_dict(), opt=opt.state_dict(), rng=g.get_state())
            save_atomic(state, ckpt)
    vae.eval()
    return state


@torch.no_grad()
def encode_all(vae, clip, images, work):
    """Posterior mean and std of every render, and its CLIP image embedding (the exact 8-bit ->
    CLIPImageProcessor path of the guidance)."""
    path = os.path.join(work, "latents.pt")
    if os.path.isfile(path):
        return torch.load(path, weights_only=True)
    fe = feature_extractor()
    N, V = images.shape[:2]
    flat = images.reshape(N * V, *images.shape[2:])
    means, stds, embs = [], [], []
    for i in progress(range(0, len(flat), 256), "encode"):
        x = flat[i:i + 256]
        post = vae.encode(x.float() / 127.5 - 1).latent_dist
        means.append(post.mean)
        stds.append(post.std)
        px = fe(images=list(x.permute(0, 2, 3, 1).numpy()), return_tensors="pt").pixel_values
        embs.append(clip(px).image_embeds)
    out = {"mean": torch.cat(means).reshape(N, V, 4, *means[0].shape[-2:]), "std": torch.cat(stds).reshape(N, V, 4, *means[0].shape[-2:]),
           "clip": torch.cat(embs).reshape(N, V, -1)}
    save_atomic(out, path)
    return out


# ---------------------------------------------------------------------------------- 3. UNet
def camera_table(c2w):
    """T[n, i, j] = zero123_T(view i -> view j) of object n, Zero123's training formula."""
    N, V = c2w.shape[:2]
    T = torch.zeros(N, V, V, 4)
    for n in range(N):
        for i in range(V):
            for j in range(V):
                T[n, i, j] = torch.from_numpy(toy_objects.zero123_T(c2w[n, i].numpy(), c2w[n, j].numpy()))
    return T


def min_snr_weights(alphas_cumprod: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-timestep weights of the epsilon loss under Min-SNR-gamma (Hang et al. 2023): min(SNR,
    gamma) / SNR, SNR = alpha_bar / (1 - alpha_bar), so the low-noise steps (fine latent detail)
    no longer dominate the gradient; gamma 0: all ones (plain MSE)."""
    if gamma <= 0:
        return torch.ones_like(alphas_cumprod)
    snr = alphas_cumprod / (1 - alphas_cumprod)
    return snr.clamp(max=gamma) / snr


def pair_azimuths(T: torch.Tensor) -> torch.Tensor:
    """|azimuth| in degrees, in [0, 180], between the two views of every pair of ``camera_table``."""
    return torch.rad2deg(torch.atan2(T[..., 1], T[..., 2])).abs()


def train_unet(unet, proj, lat, T, scaling, steps, batch, lr, work, seed, p_uncond=0.1, ema_decay=0.999, min_snr=0.0,
               eval_every=0, evaluate=None, pair_range=(0.0, 180.0)):
    """``evaluate(step, ema, seconds, loss)`` runs every ``eval_every`` steps on the EMA weights
    (``seconds``: UNet training time so far, over every resumed run, evaluations excluded).
    ``pair_range`` (degrees): only the (input, target) pairs whose azimuths are that far apart
    are drawn (the default, every pair, draws them as before)."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(**SCHEDULER)
    snr_weight = min_snr_weights(sched.alphas_cumprod, min_snr)
    ckpt = os.path.join(work, "unet.pt")
    params = list(unet.parameters()) + list(proj.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    ema = [p.detach().clone() for p in params]
    state = {"step": 0, "losses": []}
    if os.path.isfile(ckpt):
        state = torch.load(ckpt, weights_only=False)
        unet.load_state_dict(state["unet"])
        proj.load_state_dict(state["proj"])
        opt.load_state_dict(state["opt"])
        ema = state["ema"]
    g = torch.Generator().manual_seed(seed + 2)
    if "rng" in state:
        g.set_state(state["rng"])
    N, V = lat["mean"].shape[:2]
    restricted = tuple(pair_range) != (0.0, 180.0)
    d_az = pair_azimuths(T)
    allowed = (d_az >= pair_range[0] - 1e-4) & (d_az <= pair_range[1] + 1e-4)
    usable = allowed.flatten(1).any(1).nonzero()[:, 0]
    if restricted and len(usable) == 0:
        raise ValueError(f"--pair-azimuths {pair_range[0]:g} {pair_range[1]:g}: no object has two views that far apart "
                         "(widen the range or render more --views)")
    warmup = min(200, steps // 10 + 1)
    t_start, base_seconds, eval_seconds = time.time(), state.get("seconds", 0.0), 0.0
    unet.train()
    bar = progress(range(state["step"], steps), "unet", total=steps, initial=state["step"])
    for step in bar:
        lr_now = lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for group in opt.param_groups:
            group["lr"] = lr_now
        n = torch.randint(N, (batch,), generator=g)
        i = torch.randint(V, (batch,), generator=g)
        j = torch.randint(V, (batch,), generator=g)
        if restricted:  # objects that have such a pair, and their pairs in the range, by redrawing the rest
            n = usable[torch.randint(len(usable), (batch,), generator=g)]
            bad = ~allowed[n, i, j]
            while bad.any():
                i[bad] = torch.randint(V, (int(bad.sum()),), generator=g)
                j[bad] = torch.randint(V, (int(bad.sum()),), generator=g)
                bad = ~allowed[n, i, j]
        z0 = (lat["mean"][n, j] + lat["std"][n, j] * torch.randn(lat["mean"][n, j].shape, generator=g)) * scaling
        cond = lat["mean"][n, i]  # the input view's latent, unscaled (Zero123: posterior mode)
        token = proj(torch.cat([lat["clip"][n, i], T[n, i, j]], -1))[:, None]
        keep = (torch.rand(batch, generator=g) >= p_uncond).float()
        cond = cond * keep[:, None, None, None]
        token = token * keep[:, None, None]
        noise = torch.randn(z0.shape, generator=g)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,), generator=g)
        noisy = sched.add_noise(z0, noise, t)
        pred = unet(torch.cat([noisy, cond], 1), t, encoder_hidden_states=token).sample
        mse = ((pred - noise) ** 2).mean((1, 2, 3))
        loss = mse.mean()  # the logged loss stays the plain epsilon MSE, comparable across weightings
        opt.zero_grad(set_to_none=True)
        (snr_weight[t] * mse).mean().backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            d = min(ema_decay, (1 + step) / (10 + step))
            for e, p in zip(ema, params):
                e.mul_(d).add_(p.detach(), alpha=1 - d)
        state["losses"].append(float(loss))
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{np.mean(state['losses'][-50:]):.4f}")
        at_eval = bool(eval_every) and (step + 1) % eval_every == 0
        if (step + 1) % 200 == 0 or step + 1 == steps or at_eval:
            state.update(step=step + 1, unet=unet.state_dict(), proj=proj.state_dict(), opt=opt.state_dict(), ema=ema,
                         rng=g.get_state(), seconds=base_seconds + time.time() - t_start - eval_seconds)
            save_atomic(state, ckpt)
        if at_eval and evaluate is not None:
            t_eval = time.time()
            evaluate(step + 1, ema, state["seconds"], float(np.mean(state["losses"][-200:])))
            eval_seconds += time.time() - t_eval
    with torch.no_grad():  # export the EMA weights
        for e, p in zip(ema, params):
            p.copy_(e)
    unet.eval()
    return state


# -------------------------------------------------------------------------------- 4. export
def export(out, vae, unet, clip, proj, record):
    """The ashawkey/zero123-xl-diffusers layout: each library component through its own
    save_pretrained, the camera projection and model_index.json as that repository has them."""
    from diffusers import DDIMScheduler
    from safetensors.torch import save_file

    tmp = out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    vae.save_pretrained(os.path.join(tmp, "vae"), safe_serialization=True)
    unet.save_pretrained(os.path.join(tmp, "unet"), safe_serialization=True)
    clip.save_pretrained(os.path.join(tmp, "image_encoder"), safe_serialization=True)
    feature_extractor().save_pretrained(os.path.join(tmp, "feature_extractor"))
    DDIMScheduler(**SCHEDULER).save_pretrained(os.path.join(tmp, "scheduler"))
    emb = CLIP_CONFIG["projection_dim"]
    save_json(os.path.join(tmp, "clip_camera_projection", "config.json"),
               {"_class_name": "CLIPCameraProjection", "_diffusers_version": "0.19.0", "embedding_dim": emb,
                "additional_embeddings": 4})
    save_file({"proj.weight": proj.weight.detach().contiguous().clone(), "proj.bias": proj.bias.detach().clone()},
              os.path.join(tmp, "clip_camera_projection", "diffusion_pytorch_model.safetensors"))
    save_json(os.path.join(tmp, "model_index.json"),
               {"_class_name": "Zero123Pipeline", "_diffusers_version": "0.19.0.dev0",
                "clip_camera_projection": ["zero123", "CLIPCameraProjection"],
                "feature_extractor": ["transformers", "CLIPImageProcessor"],
                "image_encoder": ["transformers", "CLIPVisionModelWithProjection"], "requires_safety_checker": False,
                "safety_checker": [None, None], "scheduler": ["diffusers", "DDIMScheduler"],
                "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]})
    save_json(os.path.join(tmp, "training.json"), record)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
