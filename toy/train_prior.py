"""Train the toy Zero123 shipped in models/toy-zero123 (a few M parameters, 64 px, 8x8 latents).

    python toy/train_prior.py --out models/toy-zero123            # the shipped model, from seed 0
    python toy/train_prior.py --out /tmp/toy --objects 50 --vae-steps 20 --unet-steps 20   # a smoke run

The architecture is Zero123's, in the published diffusers layout that ``guidance_model=`` loads
(ashawkey/zero123-xl-diffusers: vae/, unet/ with 8 input channels, image_encoder/,
feature_extractor/, clip_camera_projection/, scheduler/, model_index.json), only narrower:

1. data: ``--objects`` toy objects (toy/objects.py, seeds 0..N-1, all inside TRAIN_SEEDS),
   ``--views`` renders each at 64 px on white
   with the project's mesh renderer, elevations in [-30, 30], azimuths in [0, 360);
2. vae: an AutoencoderKL (3 downsamplings: 64 px -> 8x8x4; 2 at 32 px) trained on those renders (MSE + L1,
   the object's pixels weighted 10x the background, + a small KL); its ``scaling_factor`` is set to 1 / std of the latents, as Stable Diffusion's;
3. unet: the UNet (8 input channels: noisy target latent + the input view's latent, unscaled, as
   Zero123 concatenates it) and the camera projection, trained with the epsilon objective on random
   (input view, target view) pairs of one object (``--min-snr G``: Min-SNR-G loss weighting; the
   shipped model: plain MSE, see BENCHMARKS.md for what the weighting changes). The camera input
   is Zero123's training-data formula (toy/objects.py zero123_T, from the two camera centres); the
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

``--init-from DIR`` continues a model folder this command wrote (the shipped one): its VAE is kept
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
``--work``/curve_model) and scored as ``toy/eval_prior.py`` scores a prior: its DDIM novel views
at azimuth +90/180/270 on ``--eval-objects`` held-out objects (PSNR, mask IoU), the input view
copied there, and the same samples conditioned on the azimuths negated (a prior that knows left
from right scores lower). Each point goes to ``--work``/curve.json (and training.json's
``curve``) with the UNet's training hours so far, evaluations excluded, over every resumed run;
``toy/plot_curve.py`` draws it. The evaluation settings may change between resumed runs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from io_utils import load_json, save_json  # noqa: E402
from toy import objects as toy_objects  # noqa: E402
from toy.prior import (RESOLUTION, build_models, camera_table, encode_all, export,  # noqa: E402
                       init_unet_hours, load_init, make_data, sign_init, train_unet, train_vae)


def main(argv=None):
    from cli import COUNT_ARG, NONNEG_ARG, NONNEG_INT_ARG, POSITIVE_ARG

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models/toy-zero123", help="output folder (diffusers Zero123 layout)")
    ap.add_argument("--work", default="logs/toy_prior_work", help="data cache and resumable checkpoints")
    ap.add_argument("--objects", type=COUNT_ARG, default=1000, help="training objects (seeds 0..N-1)")
    ap.add_argument("--views", type=COUNT_ARG, default=10, help="renders per object")
    ap.add_argument("--vae-steps", type=NONNEG_INT_ARG, default=2000)
    ap.add_argument("--vae-batch", type=COUNT_ARG, default=32)
    ap.add_argument("--vae-lr", type=POSITIVE_ARG, default=2e-3)
    ap.add_argument("--unet-steps", type=NONNEG_INT_ARG, default=3000)
    ap.add_argument("--unet-batch", type=COUNT_ARG, default=64)
    ap.add_argument("--unet-lr", type=POSITIVE_ARG, default=1e-3)
    ap.add_argument("--min-snr", type=NONNEG_ARG, default=0.0,
                    help="Min-SNR-gamma loss weighting of the UNet (0: plain MSE, as the shipped model)")
    ap.add_argument("--pair-azimuths", type=float, nargs=2, default=[0.0, 180.0], metavar=("MIN", "MAX"),
                    help="train only on (input, target) pairs whose azimuths are MIN to MAX degrees apart (default: "
                    "every pair; e.g. 60 120: the side views, where left and right differ most)")
    ap.add_argument("--eval-every", type=NONNEG_INT_ARG, default=0,
                    help="learning curve: every N UNet steps, the EMA prior's DDIM novel views on --eval-objects "
                    "held-out objects (and with the azimuth mirrored) into --work's curve.json (0: off)")
    ap.add_argument("--eval-objects", type=COUNT_ARG, default=8, help="held-out objects of each learning-curve point")
    ap.add_argument("--init-from", default="", help="continue this model folder's UNet and camera projection "
                    "(its VAE kept as it is; --vae-steps ignored): e.g. models/toy-zero123")
    ap.add_argument("--attention", choices=("default", "classic"), default="default",
                    help="the UNet's attention processor while training (classic: diffusers' AttnProcessor, faster "
                    "on CPU; the weights are the same kind either way)")
    ap.add_argument("--sign-init", type=NONNEG_ARG, default=0.0,
                    help="before the UNet's first step, set the camera projection's sin(d_azimuth) column (the only "
                    "input that tells left from right) to a random direction of this norm (0: leave it; Zero123's "
                    "zero init, which the shipped model kept near zero: 0.11 against 1.19 for cos)")
    ap.add_argument("--seed", type=NONNEG_INT_ARG, default=0)
    ap.add_argument("--threads", type=NONNEG_INT_ARG, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.objects < 1 or args.views < 2 or args.objects > len(toy_objects.TRAIN_SEEDS):
        print(f"error: --objects must be in [1, {len(toy_objects.TRAIN_SEEDS)}] and --views at least 2", file=sys.stderr)
        return 2
    if args.init_from and not os.path.isfile(os.path.join(args.init_from, "training.json")):
        print(f"error: --init-from {args.init_from}: no training.json there (a model folder toy/train_prior.py "
              "wrote, e.g. models/toy-zero123)", file=sys.stderr)
        return 2
    if args.init_from and os.path.abspath(args.init_from) == os.path.abspath(args.out):
        print(f"error: --out {args.out} is the --init-from folder; write the continued model elsewhere first "
              "(the folder it starts from is read again on every resume)", file=sys.stderr)
        return 2
    if args.init_from:
        size = load_json(os.path.join(args.init_from, "vae", "config.json")).get("sample_size")
        if size != RESOLUTION:
            print(f"error: --init-from {args.init_from}: a {size} px VAE; a toy Zero123 is {RESOLUTION} px",
                  file=sys.stderr)
            return 2
    lo, hi = args.pair_azimuths
    if not 0 <= lo <= hi <= 180:
        print(f"error: --pair-azimuths {lo:g} {hi:g}: need 0 <= MIN <= MAX <= 180 (degrees apart)", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    meta = {k: v for k, v in vars(args).items() if k not in ("out", "work", "threads", "eval_every", "eval_objects",
                                                               "attention")}
    meta["resolution"] = RESOLUTION  # recorded: the render size of the run
    if args.init_from:
        meta["vae_steps"] = 0  # the folder's VAE is kept as it is
        meta["init_from"] = os.path.abspath(args.init_from)
    else:
        del meta["init_from"]
    meta_path = os.path.join(args.work, "args.json")
    if os.path.isfile(meta_path):
        # a work folder records only the flags its run was given: the others at their defaults
        old = {"min_snr": 0.0, "resolution": RESOLUTION, "pair_azimuths": [0.0, 180.0], "sign_init": 0.0,
               **load_json(meta_path)}
        history = old.pop("unet_steps_history", [old.get("unet_steps")])
        same_but_longer = ({**old, "unet_steps": meta["unet_steps"]} == meta and meta["unet_steps"] >= history[-1])
        if not same_but_longer:
            print(f"error: {args.work} holds a run with other settings ({meta_path}); use another --work or delete it "
                  f"(only a larger --unet-steps continues it)", file=sys.stderr)
            return 2
        if meta["unet_steps"] > history[-1]:
            history.append(meta["unet_steps"])
        meta["unet_steps_history"] = history
    save_json(meta_path, meta)
    t0 = time.time()
    init_record, hours_before = None, 0.0
    if args.init_from:
        vae, unet, clip, proj, init_record = load_init(args.init_from)
        hours_before = init_unet_hours(init_record)
    else:
        vae, unet, clip, proj = build_models(args.seed)
    if args.sign_init:  # a resumed run's checkpoint replaces it with the projection it trained
        sign_init(proj, args.sign_init, args.seed)
    if args.attention == "classic":
        from diffusers.models.attention_processor import AttnProcessor

        unet.set_attn_processor(AttnProcessor())
    data = make_data(os.path.join(args.work, "data.pt"), args.objects, args.views)
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
    curve = load_json(curve_path) if os.path.isfile(curve_path) else []

    def curve_point(step, ema, seconds, loss):
        """One learning-curve point: the EMA weights exported as a model folder, scored as
        toy/eval_prior.py scores a prior (novel views, input view copied, azimuth mirrored)."""
        import copy

        from guidance.zero123 import Zero123Guidance
        from toy.evaluation import novel_view_scores, vae_roundtrip

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
        save_json(curve_path, curve)
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
    runs = load_json(runs_path) if os.path.isfile(runs_path) else []
    runs.append({"unet_steps": args.unet_steps, "seconds": record["seconds"], "torch_threads": record["torch_threads"],
                 "date": time.strftime("%Y-%m-%d")})
    save_json(runs_path, runs)
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
    from cli import guarded

    sys.exit(guarded(main))
