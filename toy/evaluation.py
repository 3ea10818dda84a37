"""The toy Zero123's own quality, without a 3D run (the library of ``toy/eval_prior.py``, of the
learning curve of ``toy/train_prior.py`` and of the toy benchmarks).

- ``pair_losses``: epsilon / x0 MSE of (input view -> target view) pairs through the guidance's
  own conditioning, with and without the conditions, the azimuth mirrored or held still;
- ``vae_roundtrip``: PSNR / SSIM of the VAE's round trip of held-out renders (every target's ceiling);
- ``novel_views`` / ``novel_view_scores``: DDIM samples at azimuth offsets 90, 180 and 270 against
  the ground truth, beside the input view copied there;
- ``evaluate`` / ``table``: all of them for one model folder, and their table.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from cameras import Camera, View
from metrics import mask_iou, psnr, ssim
from toy import objects as toy_objects

TIMESTEPS = (100, 400, 700, 900)  # pair_losses' noise levels
NOVEL_OFFSETS = (90.0, 180.0, 270.0)  # azimuths of the novel views, relative to the input view


@torch.no_grad()
def pair_losses(g, seeds, views: int, timesteps=TIMESTEPS, noise_seed: int = 0, mirror: bool = False,
                still: bool = False) -> dict:
    """Mean epsilon / x0 MSE over (front view -> each of ``views`` views) of objects ``seeds``.
    ``mirror`` conditions on the targets' azimuths negated (the renders unchanged): the control for
    a renderer and a prior that disagree on the direction of azimuth. ``still`` conditions every
    target on the input view's own camera (relative camera zero): a model that ignores its camera
    scores the same as with the true one."""
    gen = torch.Generator().manual_seed(noise_seed)
    ab = g.scheduler.alphas_cumprod
    sums = {t: {"eps": 0.0, "eps_uncond": 0.0, "x0": 0.0} for t in timesteps}
    for seed in seeds:
        cams = toy_objects.object_cameras(seed, views + 1, g.image_size, front=True)
        rgb, _ = toy_objects.render_views(toy_objects.make_object(seed), [c for _, _, c in cams])
        g.prepare(image=rgb[0], elevation=0.0, radius=toy_objects.RADIUS)
        targets = [View(c, 0.0 if still else el, 0.0 if still else (-az if mirror else az), toy_objects.RADIUS)
                   for el, az, c in cams[1:]]
        cc, vae_lat = g.conditioning(targets)
        z0 = g.encode(rgb[1:].to(g.device, g.dtype), sample=False)
        noise = torch.randn(z0.shape, generator=gen).to(z0)
        for t in timesteps:
            tt = torch.full((len(targets),), t, device=g.device, dtype=torch.long)
            noisy = g.scheduler.add_noise(z0, noise, tt)
            eps = g.unet(torch.cat([noisy, vae_lat], 1), tt, encoder_hidden_states=cc).sample
            unc = g.unet(torch.cat([noisy, torch.zeros_like(vae_lat)], 1), tt,
                         encoder_hidden_states=torch.zeros_like(cc)).sample
            a = ab[t].to(z0)
            x0 = (noisy - (1 - a).sqrt() * eps) / a.sqrt()
            sums[t]["eps"] += float(((eps - noise) ** 2).mean())
            sums[t]["eps_uncond"] += float(((unc - noise) ** 2).mean())
            sums[t]["x0"] += float(((x0 - z0) ** 2).mean())
    out = {}
    for t, s in sums.items():
        row = {k: v / len(seeds) for k, v in s.items()}
        row["gain"] = 1 - row["eps"] / max(row["eps_uncond"], 1e-12)
        out[str(t)] = row
    return out


@torch.no_grad()
def autoencode(vae):
    """A diffusers AutoencoderKL as vae_roundtrip's ``roundtrip``: images [B,3,H,W] in [0,1] encoded
    to the posterior mean and decoded (in eval mode, without gradients)."""
    @torch.no_grad()
    def roundtrip(x):
        vae.eval()
        return (vae.decode(vae.encode(x * 2 - 1).latent_dist.mean).sample / 2 + 0.5).clamp(0, 1)
    return roundtrip


def vae_roundtrip(g, objects: int, views: int = 4, roundtrip=None, size: int | None = None) -> dict:
    """PSNR / SSIM of the prior's VAE round trip (posterior mean, decoded) of held-out renders at its
    own resolution (the first ``objects`` held-out objects, ``views`` orbit views each): the ceiling
    of every target the prior can give (stage 2's SDEdit, SDS's colours). ``g``: the guidance; or
    None with ``roundtrip`` (images [B,3,H,W] in [0,1] -> the same) and the render ``size``."""
    size = size or g.image_size
    roundtrip = roundtrip or (lambda x: g.decode(g.encode(x.to(g.device, g.dtype), sample=False)))
    ps, ss = [], []
    for s in range(toy_objects.HELDOUT_START, toy_objects.HELDOUT_START + objects):
        cams = toy_objects.object_cameras(s, views, size)
        rgb, _ = toy_objects.render_views(toy_objects.make_object(s), [c for _, _, c in cams])
        rt = roundtrip(rgb).float().cpu()
        ps += [psnr(a, b) for a, b in zip(rt, rgb)]
        ss += [ssim(a, b) for a, b in zip(rt, rgb)]
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss))}


# ------------------------------------------------------------------------ the prior's own views
def _mask(img, thresh=0.9):
    """Foreground of an image on white: any channel below ``thresh``."""
    return (img < thresh).any(0)


@torch.no_grad()
def novel_views(model, seed, example, guidance_scale, steps=50, resolution=64, mirror=False) -> dict:
    """The prior's DDIM samples at azimuth offsets NOVEL_OFFSETS from the input view, against the
    ground truth's renders there, and the input view copied as the baseline. ``mirror`` conditions
    the samples on the azimuths negated (a prior that knows left from right then scores lower)."""
    from guidance.zero123 import Zero123Guidance
    from inputs import load_input_image
    from io_utils import save_image

    png, _ = example
    g = Zero123Guidance(model, guidance_scale=guidance_scale, seed=seed)
    size = g.image_size
    rgb, mask = load_input_image(png, size, do_recenter=False)
    g.prepare(image=rgb, mask=mask, elevation=0.0, radius=toy_objects.RADIUS)
    gt_mesh = toy_objects.make_object(seed)
    views = [View(Camera.orbit(0.0, a, toy_objects.RADIUS, toy_objects.FOVY, size), 0.0, a, toy_objects.RADIUS)
             for a in NOVEL_OFFSETS]
    gt, _ = toy_objects.render_views(gt_mesh, [v.camera for v in views])
    inp = (rgb * mask + (1 - mask))[None].expand(len(views), -1, -1, -1)
    asked = [View(v.camera, 0.0, -v.azimuth, toy_objects.RADIUS) for v in views] if mirror else views
    pred = g.refine(inp.clone(), asked, strength=0.0, steps=steps)  # strength 0: from pure noise

    def scores(x):
        ps = [float(-10 * torch.log10(((a - b) ** 2).mean().clamp_min(1e-10))) for a, b in zip(x, gt)]
        ious = [mask_iou(_mask(a), _mask(b)) for a, b in zip(x, gt)]
        return {"psnr": float(np.mean(ps)), "iou": float(np.mean(ious)), "psnr_per_view": [round(p, 2) for p in ps],
                "iou_per_view": [round(i, 3) for i in ious]}
    grid = torch.cat([torch.cat(list(gt), 2), torch.cat(list(pred), 2)], 1)
    grid_path = os.path.join(os.path.dirname(png), f"novel_views_{seed}{'_mirrored' if mirror else ''}.png")
    save_image(grid_path, grid.permute(1, 2, 0).numpy())
    return {"prior": scores(pred), "input_copied": scores(inp), "grid": grid_path}


def novel_view_scores(model: str, objects: int, work: str, guidance_scale: float = 3.0, mirrored: bool = False) -> dict:
    """``novel_views`` on the first ``objects`` held-out objects, averaged: PSNR and mask IoU
    of the prior's DDIM samples (``prior``) and of the input view copied (``input_copied``); with
    ``mirrored`` also of the samples conditioned on the azimuths negated (``prior_mirrored``)."""
    rows = []
    for s in range(toy_objects.HELDOUT_START, toy_objects.HELDOUT_START + objects):
        example = toy_objects.write_example(s, os.path.join(work, "inputs"))
        row = novel_views(model, s, example, guidance_scale)
        if mirrored:
            row["prior_mirrored"] = novel_views(model, s, example, guidance_scale, mirror=True)["prior"]
        rows.append(row)
    return {k: {m: float(np.mean([x[k][m] for x in rows])) for m in ("psnr", "iou")}
            for k in ("prior", "input_copied") + (("prior_mirrored",) if mirrored else ())}


def evaluate(model: str, objects: int, views: int, novel: int, work: str, guidance_scale: float) -> dict:
    from guidance.zero123 import Zero123Guidance

    g = Zero123Guidance(model, guidance_scale=guidance_scale, seed=0)
    heldout = range(toy_objects.HELDOUT_START, toy_objects.HELDOUT_START + objects)
    res = {"train": pair_losses(g, range(objects), views), "heldout": pair_losses(g, heldout, views),
           "heldout_mirrored": pair_losses(g, heldout, views, mirror=True),
           "heldout_still": pair_losses(g, heldout, views, still=True), "vae_heldout": vae_roundtrip(g, objects)}
    if novel:
        res["novel_views"] = novel_view_scores(model, novel, work, guidance_scale)
    return res


def table(results: dict) -> str:
    lines = ["| model | objects | t | eps MSE | eps MSE, no conditions | gain | x0 MSE |",
             "|---|---|---|---|---|---|---|"]
    for model, res in results.items():
        model = os.path.relpath(model)
        for split in ("train", "heldout", "heldout_mirrored", "heldout_still"):
            for t, r in res[split].items():
                lines.append(f"| {model} | {split} | {t} | {r['eps']:.4f} | {r['eps_uncond']:.4f} | {r['gain']:.3f} | "
                             f"{r['x0']:.4f} |")
    for model, res in results.items():
        v = res["vae_heldout"]
        lines.append(f"\n{os.path.relpath(model)}: VAE round trip of held-out renders PSNR {v['psnr']:.2f} dB, "
                     f"SSIM {v['ssim']:.3f}")
        if "novel_views" in res:
            nv = res["novel_views"]
            lines.append(f"\n{os.path.relpath(model)}: novel views PSNR {nv['prior']['psnr']:.2f} dB, mask IoU {nv['prior']['iou']:.3f} "
                         f"(input view copied: {nv['input_copied']['psnr']:.2f} dB, {nv['input_copied']['iou']:.3f})")
    return "\n".join(lines)
