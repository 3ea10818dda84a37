"""The toy Zero123's own quality, without a 3D run: is it underfit (held-out objects as good as
training ones, both poor) or overfit (held-out much worse)? And does its input view help?

    python scripts/eval_toy_prior.py --models models/toy-zero123 [other/folder ...] --json out.json

Per model, loaded as ``guidance_model=`` loads it (guidance.zero123): ``--objects`` training
objects (seeds 0..N-1) and as many held-out ones (from toy_objects.HELDOUT_START), each seen from
image mode's input view (elevation 0, azimuth 0) and ``--views`` orbit views. For the pairs (input
view -> each view), through the guidance's own conditioning (its camera embedding, its CLIP and
VAE path): the epsilon MSE at fixed timesteps with the conditions (``eps``) and with both dropped
(``eps_uncond``, the classifier-free branch), and the MSE of the implied clean latent (``x0``).
``gain`` = 1 - eps / eps_uncond: how much the input view and the camera tell the model;
``heldout_mirrored``: the same held-out pairs conditioned on the azimuths negated (does the model
know left from right?); ``heldout_still``: conditioned on the input view's own camera (does it use
its camera at all?).
Then the DDIM novel views of bench_toy.novel_views on ``--novel`` held-out objects (PSNR and mask
IoU against the truth, beside the input view copied).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import toy_objects  # noqa: E402

TIMESTEPS = (100, 400, 700, 900)


@torch.no_grad()
def pair_losses(g, seeds, views: int, timesteps=TIMESTEPS, noise_seed: int = 0, mirror: bool = False,
                still: bool = False) -> dict:
    """Mean epsilon / x0 MSE over (front view -> each of ``views`` views) of objects ``seeds``.
    ``mirror`` conditions on the targets' azimuths negated (the renders unchanged): the control for
    a renderer and a prior that disagree on the direction of azimuth. ``still`` conditions every
    target on the input view's own camera (relative camera zero): a model that ignores its camera
    scores the same as with the true one."""
    from cameras import View

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
    from eval_recon import psnr, ssim

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


def novel_view_scores(model: str, objects: int, work: str, guidance_scale: float = 3.0, mirrored: bool = False) -> dict:
    """bench_toy.novel_views on the first ``objects`` held-out objects, averaged: PSNR and mask IoU
    of the prior's DDIM samples (``prior``) and of the input view copied (``input_copied``); with
    ``mirrored`` also of the samples conditioned on the azimuths negated (``prior_mirrored``)."""
    from bench_toy import novel_views

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


def main(argv=None):
    from cli import COUNT, NONNEG_INT, POSITIVE

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=[os.path.join(ROOT, "models", "toy-zero123")])
    ap.add_argument("--objects", type=COUNT, default=50, help="objects per split (training, held-out)")
    ap.add_argument("--views", type=COUNT, default=8, help="target views per object")
    ap.add_argument("--novel", type=NONNEG_INT, default=16, help="held-out objects for the DDIM novel views (0: none)")
    ap.add_argument("--guidance-scale", type=POSITIVE, default=3.0,
                    help="CFG scale of the novel views (configs/toy.yaml's)")
    ap.add_argument("--work", default=os.path.join(ROOT, "logs", "eval_toy_prior"),
                    help="inputs and view grids, a folder per model")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--threads", type=NONNEG_INT, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    for m in args.models:
        if not os.path.isfile(os.path.join(m, "model_index.json")):
            raise ValueError(f"no toy model at {m} (python scripts/train_toy_prior.py --out {m})")
    if args.threads:
        torch.set_num_threads(args.threads)
    from guidance.loading import quiet_libraries

    quiet_libraries()
    # each model's novel-view grids in a folder of its own (they are named by object seed)
    results = {m: evaluate(m, args.objects, args.views, args.novel,
                           os.path.join(args.work, f"{i}_{os.path.basename(os.path.normpath(m))}"), args.guidance_scale)
               for i, m in enumerate(args.models)}
    print(table(results))
    if args.json:
        from io_utils import save_json

        save_json(args.json, results)
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
