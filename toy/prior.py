"""Train the toy Zero123 shipped in models/toy-zero123 (a few M parameters, 64 px, 8x8 latents).

    python scripts/train_toy_prior.py --out models/toy-zero123            # the shipped model, from seed 0
    python scripts/train_toy_prior.py --out /tmp/toy --objects 50 --vae-steps 20 --unet-steps 20   # a smoke run

The architecture is Zero123's, in the published diffusers layout that ``guidance_model=`` loads
(ashawkey/zero123-xl-diffusers: vae/, unet/ with 8 input channels, image_encoder/,
feature_extractor/, clip_camera_projection/, scheduler/, model_index.json), only narrower:

1. data: ``--objects`` toy objects (toy_objects.py, seeds 0..N-1, all inside TRAIN_SEEDS),
   ``--views`` renders each at 64 px (``--resolution``; 32 is the design being measured) on white
   with the project's mesh renderer, elevations in [-30, 30], azimuths in [0, 360);
2. vae: an AutoencoderKL (3 downsamplings: 64 px -> 8x8x4; 2 at 32 px) trained on those renders (MSE + L1,
   the object's pixels weighted 10x the background, + a small KL); its ``scaling_factor`` is set to 1 / std of the latents, as Stable Diffusion's;
3. unet: the UNet (8 input channels: noisy target latent + the input view's latent, unscaled, as
   Zero123 concatenates it) and the camera projection, trained with the epsilon objective on random
   (input view, target view) pairs of one object (``--min-snr G``: Min-SNR-G loss weighting; the
   shipped model: plain MSE, see BENCHMARKS.md for what the weighting changes). The camera input
   is Zero123's training-data formula (toy_objects.zero123_T, from the two camera centres); the
   cross-attention token is proj([CLIP image embedding, T]). 10 % of the samples drop both
   conditions (zeros, what the guidance feeds its unconditional branch). EMA weights are exported.

The CLIP image encoder stays at its random initialisation (frozen): its embedding is a fixed
random feature of the input view, which the trained projection reads with the camera.

Each stage saves its state in ``--work`` and a rerun resumes where it stopped (Ctrl-C is safe).
A rerun with a larger ``--unet-steps`` (all else equal) continues the UNet from its last
checkpoint along the longer run's learning-rate schedule (``unet_steps_history`` in args.json and
training.json records each length it was run to, so ``--unet-steps 3000`` then ``--unet-steps
7000`` reproduces such a model).
``--threads`` sets torch's threads (give a background run its share of the cores).

``--init-from DIR`` continues a model folder this script wrote (the shipped one): its VAE is kept
exactly as it is (encoder and the fine-tuned decoder; ``--vae-steps`` is ignored), so the latents
and stage 1 see the same encoder; its UNet and camera projection (the exported EMA weights) are
trained on along a new learning-rate schedule of ``--unet-steps`` with a fresh optimiser. The new
``training.json`` keeps the folder's own record under ``init_from``, and the learning curve's
hours count the folder's UNet hours first. ``--attention classic`` trains with diffusers' classic
attention processor (the same maths; 11-25 % faster a step on these CPUs, BENCHMARKS.md).
``--sign-init N`` starts the camera projection's sin(d_azimuth) column at a random direction of
norm N instead of Zero123's zero: from zero (the shipped model kept it at 0.11, against 1.19 for
cos) the UNet sees left and right almost alike, and 2000 steps on side pairs taught it no difference;
started at 1.2 the same run learns the sign (BENCHMARKS.md).

Learning curve: with ``--eval-every N`` the EMA prior is exported every N UNet steps (to
``--work``/curve_model) and scored as ``eval_toy_prior.py`` scores a prior: its DDIM novel views
at azimuth +90/180/270 on ``--eval-objects`` held-out objects (PSNR, mask IoU), the input view
copied there, and the same samples conditioned on the azimuths negated (a prior that knows left
from right scores lower). Each point goes to ``--work``/curve.json (and training.json's
``curve``) with the UNet's training hours so far, evaluations excluded, over every resumed run;
``scripts/plot_toy_curve.py`` draws it. The evaluation settings may change between resumed runs.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import toy_objects  # noqa: E402

RESOLUTION = 64  # render size of the shipped toy model (--resolution)
LATENT = 8  # latent side at every --resolution (the UNet's sample_size)
RESOLUTIONS = (32, 64)  # 32 px: the same 8x8 latents for a quarter of the pixels (4x downsampling)
CLIP_SIZE = 32  # the image encoder's input size (feature_extractor resizes to it)


def vae_config(resolution: int = RESOLUTION) -> dict:
    """The toy VAE for ``resolution`` px renders: one encoder block per halving down to 8x8x4
    latents, the narrowest dropped first (64 px: widths (8, 16, 32, 64), 3 downsamplings;
    32 px: (16, 32, 64), 2)."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, not {resolution}")
    blocks = int(round(math.log2(resolution / LATENT))) + 1
    return dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16, 32, 64)[-blocks:],
                down_block_types=("DownEncoderBlock2D",) * blocks, up_block_types=("UpDecoderBlock2D",) * blocks,
                layers_per_block=1, norm_num_groups=8, act_fn="silu", sample_size=resolution,
                mid_block_add_attention=False)


VAE_CONFIG = vae_config(RESOLUTION)
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
    torch.save(obj, path + ".tmp")
    os.replace(path + ".tmp", path)


def build_models(seed: int, resolution: int = RESOLUTION):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    vae = AutoencoderKL(**vae_config(resolution))
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

    record = json.load(open(os.path.join(folder, "training.json")))  # main() checked it is there
    vae = AutoencoderKL.from_pretrained(os.path.join(folder, "vae"))
    unet = UNet2DConditionModel.from_pretrained(os.path.join(folder, "unet"))
    clip = CLIPVisionModelWithProjection.from_pretrained(os.path.join(folder, "image_encoder"))
    sd = load_file(os.path.join(folder, "clip_camera_projection", "diffusion_pytorch_model.safetensors"))
    proj = torch.nn.Linear(sd["proj.weight"].shape[1], sd["proj.weight"].shape[0])
    proj.load_state_dict({"weight": sd["proj.weight"], "bias": sd["proj.bias"]})
    if unet.config.in_channels != 8:  # main() checked the VAE's resolution
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
def write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2)


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
    write_json(os.path.join(tmp, "clip_camera_projection", "config.json"),
               {"_class_name": "CLIPCameraProjection", "_diffusers_version": "0.19.0", "embedding_dim": emb,
                "additional_embeddings": 4})
    save_file({"proj.weight": proj.weight.detach().contiguous().clone(), "proj.bias": proj.bias.detach().clone()},
              os.path.join(tmp, "clip_camera_projection", "diffusion_pytorch_model.safetensors"))
    write_json(os.path.join(tmp, "model_index.json"),
               {"_class_name": "Zero123Pipeline", "_diffusers_version": "0.19.0.dev0",
                "clip_camera_projection": ["zero123", "CLIPCameraProjection"],
                "feature_extractor": ["transformers", "CLIPImageProcessor"],
                "image_encoder": ["transformers", "CLIPVisionModelWithProjection"], "requires_safety_checker": False,
                "safety_checker": [None, None], "scheduler": ["diffusers", "DDIMScheduler"],
                "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]})
    write_json(os.path.join(tmp, "training.json"), record)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def main(argv=None):
    from cli import COUNT, NONNEG, NONNEG_INT, POSITIVE

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models/toy-zero123", help="output folder (diffusers Zero123 layout)")
    ap.add_argument("--work", default="logs/toy_prior_work", help="data cache and resumable checkpoints")
    ap.add_argument("--objects", type=COUNT, default=1000, help="training objects (seeds 0..N-1)")
    ap.add_argument("--views", type=COUNT, default=10, help="renders per object")
    ap.add_argument("--resolution", type=int, choices=RESOLUTIONS, default=None,
                    help=f"render size; the latents are 8x8x4 at either (64: 3 downsamplings, the shipped model; "
                    f"32: 2). Default: {RESOLUTION}, or the --init-from folder's")
    ap.add_argument("--vae-steps", type=NONNEG_INT, default=2000)
    ap.add_argument("--vae-batch", type=COUNT, default=32)
    ap.add_argument("--vae-lr", type=POSITIVE, default=2e-3)
    ap.add_argument("--unet-steps", type=NONNEG_INT, default=3000)
    ap.add_argument("--unet-batch", type=COUNT, default=64)
    ap.add_argument("--unet-lr", type=POSITIVE, default=1e-3)
    ap.add_argument("--min-snr", type=NONNEG, default=0.0,
                    help="Min-SNR-gamma loss weighting of the UNet (0: plain MSE, as the shipped model)")
    ap.add_argument("--pair-azimuths", type=float, nargs=2, default=[0.0, 180.0], metavar=("MIN", "MAX"),
                    help="train only on (input, target) pairs whose azimuths are MIN to MAX degrees apart (default: "
                    "every pair; e.g. 60 120: the side views, where left and right differ most)")
    ap.add_argument("--eval-every", type=NONNEG_INT, default=0,
                    help="learning curve: every N UNet steps, the EMA prior's DDIM novel views on --eval-objects "
                    "held-out objects (and with the azimuth mirrored) into --work's curve.json (0: off)")
    ap.add_argument("--eval-objects", type=COUNT, default=8, help="held-out objects of each learning-curve point")
    ap.add_argument("--init-from", default="", help="continue this model folder's UNet and camera projection "
                    "(its VAE kept as it is; --vae-steps ignored): e.g. models/toy-zero123")
    ap.add_argument("--attention", choices=("default", "classic"), default="default",
                    help="the UNet's attention processor while training (classic: diffusers' AttnProcessor, faster "
                    "on CPU; the weights are the same kind either way)")
    ap.add_argument("--sign-init", type=NONNEG, default=0.0,
                    help="before the UNet's first step, set the camera projection's sin(d_azimuth) column (the only "
                    "input that tells left from right) to a random direction of this norm (0: leave it; Zero123's "
                    "zero init, which the shipped model kept near zero: 0.11 against 1.19 for cos)")
    ap.add_argument("--seed", type=NONNEG_INT, default=0)
    ap.add_argument("--threads", type=NONNEG_INT, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.objects < 1 or args.views < 2 or args.objects > len(toy_objects.TRAIN_SEEDS):
        print(f"error: --objects must be in [1, {len(toy_objects.TRAIN_SEEDS)}] and --views at least 2", file=sys.stderr)
        return 2
    if args.init_from and not os.path.isfile(os.path.join(args.init_from, "training.json")):
        print(f"error: --init-from {args.init_from}: no training.json there (a model folder train_toy_prior.py "
              "wrote, e.g. models/toy-zero123)", file=sys.stderr)
        return 2
    if args.init_from and os.path.abspath(args.init_from) == os.path.abspath(args.out):
        print(f"error: --out {args.out} is the --init-from folder; write the continued model elsewhere first "
              "(the folder it starts from is read again on every resume)", file=sys.stderr)
        return 2
    if args.init_from:
        size = json.load(open(os.path.join(args.init_from, "vae", "config.json"))).get("sample_size")
        if size not in RESOLUTIONS:
            print(f"error: --init-from {args.init_from}: a {size} px VAE; a toy Zero123 is one of {RESOLUTIONS} px",
                  file=sys.stderr)
            return 2
        if args.resolution not in (None, size):
            print(f"error: --resolution {args.resolution}: --init-from {args.init_from} is a {size} px model "
                  "(its VAE is kept, so its resolution is)", file=sys.stderr)
            return 2
        args.resolution = size
    args.resolution = args.resolution or RESOLUTION
    lo, hi = args.pair_azimuths
    if not 0 <= lo <= hi <= 180:
        print(f"error: --pair-azimuths {lo:g} {hi:g}: need 0 <= MIN <= MAX <= 180 (degrees apart)", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    meta = {k: v for k, v in vars(args).items() if k not in ("out", "work", "threads", "eval_every", "eval_objects",
                                                               "attention")}
    if args.init_from:
        meta["vae_steps"] = 0  # the folder's VAE is kept as it is
        meta["init_from"] = os.path.abspath(args.init_from)
    else:
        del meta["init_from"]
    meta_path = os.path.join(args.work, "args.json")
    if os.path.isfile(meta_path):
        # work folders from before --min-snr / --resolution / --pair-azimuths trained without weighting, at 64 px,
        # on every pair
        old = {"min_snr": 0.0, "resolution": RESOLUTION, "pair_azimuths": [0.0, 180.0], "sign_init": 0.0,
               **json.load(open(meta_path))}
        history = old.pop("unet_steps_history", [old.get("unet_steps")])
        same_but_longer = ({**old, "unet_steps": meta["unet_steps"]} == meta and meta["unet_steps"] >= history[-1])
        if not same_but_longer:
            print(f"error: {args.work} holds a run with other settings ({meta_path}); use another --work or delete it "
                  f"(only a larger --unet-steps continues it)", file=sys.stderr)
            return 2
        if meta["unet_steps"] > history[-1]:
            history.append(meta["unet_steps"])
        meta["unet_steps_history"] = history
    write_json(meta_path, meta)
    t0 = time.time()
    init_record, hours_before = None, 0.0
    if args.init_from:
        vae, unet, clip, proj, init_record = load_init(args.init_from)
        hours_before = init_unet_hours(init_record)
    else:
        vae, unet, clip, proj = build_models(args.seed, args.resolution)
    if args.sign_init:  # a resumed run's checkpoint replaces it with the projection it trained
        sign_init(proj, args.sign_init, args.seed)
    if args.attention == "classic":
        from diffusers.models.attention_processor import AttnProcessor

        unet.set_attn_processor(AttnProcessor())
    data = make_data(os.path.join(args.work, "data.pt"), args.objects, args.views, args.resolution)
    t_data = time.time() - t0
    if init_record is None:
        vae_state = train_vae(vae, data["images"], args.vae_steps, args.vae_batch, args.vae_lr, args.work, args.seed)
    else:
        vae_state = {"losses": []}  # from_pretrained returns it in eval mode, as train_vae leaves it
    t_vae = time.time() - t0 - t_data
    clip.eval()
    lat = encode_all(vae, clip, data["images"], args.work)
    if init_record is None:
        scaling = float(1.0 / lat["mean"].std())
        vae.register_to_config(scaling_factor=scaling)
    else:  # the scale the folder's UNet was trained with
        scaling = float(vae.config.scaling_factor)
    T = camera_table(data["c2w"])
    curve_path = os.path.join(args.work, "curve.json")
    curve = json.load(open(curve_path)) if os.path.isfile(curve_path) else []

    def curve_point(step, ema, seconds, loss):
        """One learning-curve point: the EMA weights exported as a model folder, scored as
        eval_toy_prior scores a prior (novel views, input view copied, azimuth mirrored)."""
        import copy

        from eval_toy_prior import novel_view_scores, vae_roundtrip
        from guidance.zero123 import Zero123Guidance

        if any(p["step"] == step for p in curve):
            return
        u, pr = copy.deepcopy(unet), copy.deepcopy(proj)
        with torch.no_grad():
            for e, q in zip(ema, list(u.parameters()) + list(pr.parameters())):
                q.copy_(e)
        folder = os.path.join(args.work, "curve_model")
        export(folder, vae, u, clip, pr, {"curve_step": step})
        scores = novel_view_scores(folder, args.eval_objects, os.path.join(args.work, "curve_views"), mirrored=True)
        scores["vae"] = vae_roundtrip(Zero123Guidance(folder), args.eval_objects)
        curve.append({"step": step, "hours": round(hours_before + seconds / 3600, 4), "loss": loss, "objects": args.eval_objects,
                      **{f"{k}_{m}": v for k, r in scores.items() for m, v in r.items()}})
        write_json(curve_path, curve)
        print(f"curve: step {step}, {hours_before + seconds / 3600:.2f} h, novel views PSNR {scores['prior']['psnr']:.2f} dB "
              f"(mirrored {scores['prior_mirrored']['psnr']:.2f}, input copied {scores['input_copied']['psnr']:.2f}), "
              f"IoU {scores['prior']['iou']:.3f}", file=sys.stderr)

    unet_state = train_unet(unet, proj, lat, T, scaling, args.unet_steps, args.unet_batch, args.unet_lr, args.work,
                            args.seed, min_snr=args.min_snr, eval_every=args.eval_every, evaluate=curve_point,
                            pair_range=tuple(args.pair_azimuths))
    t_unet = time.time() - t0 - t_data - t_vae
    n_params = {name: sum(p.numel() for p in m.parameters()) for name, m in
                (("vae", vae), ("unet", unet), ("image_encoder", clip), ("clip_camera_projection", proj))}
    record = {"args": meta, "parameters": n_params, "parameters_total": sum(n_params.values()),
              "trained": ["vae", "unet", "clip_camera_projection"], "frozen_at_init": ["image_encoder"],
              "scaling_factor": scaling, "train_seeds": [0, args.objects - 1],
              "heldout_from": toy_objects.HELDOUT_START,
              "vae_recon_loss_last100": (float(np.mean(vae_state["losses"][-100:])) if vae_state["losses"]
                                         else init_record.get("vae_recon_loss_last100")),
              "unet_loss_last200": float(np.mean(unet_state["losses"][-200:])),
              "seconds": {"data": round(t_data, 1), "vae": round(t_vae, 1), "unet": round(t_unet, 1)},
              "torch_threads": torch.get_num_threads(),
              # this folder's UNet training over every resumed run, evaluations excluded (the curve's hours)
              "unet_training_seconds": round(unet_state.get("seconds", 0.0), 2)}
    # every run on this --work (a continued UNet has several): steps reached, times, threads
    runs_path = os.path.join(args.work, "runs.json")
    runs = json.load(open(runs_path)) if os.path.isfile(runs_path) else []
    runs.append({"unet_steps": args.unet_steps, "seconds": record["seconds"], "torch_threads": record["torch_threads"],
                 "date": time.strftime("%Y-%m-%d")})
    write_json(runs_path, runs)
    record["runs"] = runs
    if curve:
        record["curve"] = curve
    if init_record is not None:  # the folder this run continued, its whole record (runs, curve, decoder fine-tune)
        record["trained"] = ["unet", "clip_camera_projection"]
        record["init_from"] = {"path": args.init_from, "unet_hours": round(hours_before, 4), "record": init_record}
        if "decoder_finetune" in init_record:  # the VAE kept is that fine-tuned decoder
            record["decoder_finetune"] = init_record["decoder_finetune"]
    record["attention"] = args.attention
    export(args.out, vae, unet, clip, proj, record)
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from cli import guarded

    sys.exit(guarded(main))
