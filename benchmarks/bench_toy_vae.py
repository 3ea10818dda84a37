"""Which VAE for the toy prior? Learning curves of candidate VAEs on the toy renders: the round trip
of held-out renders (the ceiling of every target the prior can give) against training time.

    python benchmarks/bench_toy_vae.py --data logs/toy_prior_work/data.pt --steps 2000 --eval-every 250 \
        --variants shipped wide latent16 --json bench_results/toy_vae_cpu.json

Each variant is an AutoencoderKL trained exactly as toy/train_prior.py trains the shipped one
(same loss, learning rate, batch, schedule, initial posterior) on the same renders (``--data``:
toy/train_prior.py's data.pt; else ``--objects`` x ``--views`` rendered anew), evaluated every
``--eval-every`` steps: PSNR / SSIM of the round trip (posterior mean, decoded) of ``--eval-objects``
held-out objects x 4 views at 64 px (toy.evaluation.vae_roundtrip), with the seconds of training so
far (1 or 2 threads: compare variants measured in one run). The latent size sets the UNet's cost:
``latent16`` has 16x16 latents, 4x the positions of the shipped 8x8.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from outputs import machine_info  # noqa: E402

from toy.prior import VAE_CONFIG  # noqa: E402

SHIPPED_VAE = os.path.join(ROOT, "models", "toy-zero123", "vae")
# name -> changes to toy.prior.VAE_CONFIG; keys starting with "_" are not config:
# "_init" a VAE folder to start from, "_part" what trains ("all" or "decoder"), "_lr" its learning rate
VARIANTS = {
    "shipped": {},  # (8, 16, 32, 64): 64 px -> 8x8x4, 0.65 M parameters
    "wide": {"block_out_channels": (32, 64, 128, 128)},  # the same latent, 4-8x the width
    "latent16": {"block_out_channels": (16, 32, 64), "down_block_types": ("DownEncoderBlock2D",) * 3,
                 "up_block_types": ("UpDecoderBlock2D",) * 3},  # one downsampling fewer: 16x16x4 latents
    "channels8": {"latent_channels": 8},  # twice the latent channels at 8x8: 512 numbers for a 64 px render
    # the shipped VAE's decoder trained on, its encoder frozen (as sd-vae-ft-mse): the shipped UNet stays valid
    "ft_decoder": {"_init": SHIPPED_VAE, "_part": "decoder", "_lr": 1e-3},
    "ft_decoder_slow": {"_init": SHIPPED_VAE, "_part": "decoder", "_lr": 5e-4},  # a gentler rate (a second round)
    # the shipped VAE trained on as a whole: its latents move, a UNet must be trained anew on them
    "continued": {"_init": SHIPPED_VAE, "_part": "all", "_lr": 1e-3},
}


def build_vae(changes: dict, seed: int = 0):
    """An AutoencoderKL of VAE_CONFIG with ``changes``, initialised as toy.prior.build_models
    does, or loaded from ``changes["_init"]``."""
    from diffusers import AutoencoderKL

    if changes.get("_init"):
        from io_utils import require_file

        require_file(os.path.join(changes["_init"], "config.json"), "VAE folder to start from")
        return AutoencoderKL.from_pretrained(changes["_init"])
    torch.manual_seed(seed)
    cfg = {**VAE_CONFIG, **{k: v for k, v in changes.items() if not k.startswith("_")}}
    vae = AutoencoderKL(**cfg)
    with torch.no_grad():  # near-deterministic posterior at start (log-variance -8), as the shipped VAE
        vae.encoder.conv_out.weight[cfg["latent_channels"]:] = 0
        vae.encoder.conv_out.bias[cfg["latent_channels"]:] = -8.0
    return vae


def curve(name, changes, images, args) -> dict:
    from toy.evaluation import autoencode, vae_roundtrip
    from toy.prior import RESOLUTION, train_vae

    vae = build_vae(changes, args.seed)
    work = os.path.join(args.work, name)
    os.makedirs(work, exist_ok=True)

    roundtrip = autoencode(vae)
    points, seconds = [], 0.0
    part, lr = changes.get("_part", "all"), changes.get("_lr", args.lr)
    if changes.get("_init"):  # where it starts
        points.append({"step": 0, "seconds": 0.0, **vae_roundtrip(None, args.eval_objects, roundtrip=roundtrip,
                                                                  size=RESOLUTION)})
    for stop in range(args.eval_every, args.steps + args.eval_every, args.eval_every):
        t0 = time.perf_counter()
        state = train_vae(vae, images, args.steps, args.batch, lr, work, args.seed, stop=min(stop, args.steps), part=part)
        seconds += time.perf_counter() - t0  # a resumed chunk (checkpoint found) costs ~0 here
        score = vae_roundtrip(None, args.eval_objects, roundtrip=roundtrip, size=RESOLUTION)
        points.append({"step": state["step"], "seconds": round(seconds, 1), **score})
        print(f"{name}: step {state['step']}, {seconds:.0f} s, held-out round trip {score['psnr']:.2f} dB, "
              f"SSIM {score['ssim']:.3f}", file=sys.stderr)
    latent = vae.encode(torch.zeros(1, 3, RESOLUTION, RESOLUTION)).latent_dist.mean.shape[1:]
    if args.save:
        vae.save_pretrained(os.path.join(args.save, name), safe_serialization=True)
    return {"parameters": sum(p.numel() for p in vae.parameters()), "latent": list(latent), "changes": str(changes),
            "part": part, "lr": lr, "curve": points}


def main(argv=None):
    from cli import COUNT_ARG, NONNEG_INT_ARG, POSITIVE_ARG

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="toy/train_prior.py's data.pt (renders of the training objects)")
    ap.add_argument("--objects", type=COUNT_ARG, default=1000, help="without --data: training objects to render")
    ap.add_argument("--views", type=COUNT_ARG, default=10, help="without --data: renders per object")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--steps", type=COUNT_ARG, default=2000, help="training steps (cosine schedule over them)")
    ap.add_argument("--eval-every", type=COUNT_ARG, default=250)
    ap.add_argument("--eval-objects", type=COUNT_ARG, default=8, help="held-out objects (x 4 views) per evaluation")
    ap.add_argument("--batch", type=COUNT_ARG, default=32)
    ap.add_argument("--lr", type=POSITIVE_ARG, default=2e-3)
    ap.add_argument("--seed", type=NONNEG_INT_ARG, default=0)
    ap.add_argument("--work", default=os.path.join(ROOT, "logs", "bench_toy_vae"), help="checkpoints (resumable)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--save", help="save each trained VAE here (a diffusers folder per variant)")
    ap.add_argument("--init", help="start the variants that start from a trained VAE (ft_decoder, continued) from this "
                    "VAE folder instead of the shipped one (e.g. a --save of an earlier run: a longer fine-tune)")
    ap.add_argument("--threads", type=NONNEG_INT_ARG, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from guidance.loading import quiet_libraries
    from toy.prior import make_data

    quiet_libraries()
    os.makedirs(args.work, exist_ok=True)
    if args.data:
        from io_utils import require_file

        require_file(args.data, "toy data file")
        images = torch.load(args.data, weights_only=True)["images"]
    else:
        images = make_data(os.path.join(args.work, "data.pt"), args.objects, args.views)["images"]
    variants = {name: ({**VARIANTS[name], "_init": args.init} if args.init and VARIANTS[name].get("_init")
                       else VARIANTS[name]) for name in args.variants}
    results = {name: curve(name, variants[name], images, args) for name in args.variants}
    results["settings"] = {k: v for k, v in vars(args).items() if k not in ("json", "work")}
    results["settings"]["torch_threads"] = torch.get_num_threads()
    print("| variant | parameters | latent | " + " | ".join(f"step {p['step']}" for p in results[args.variants[0]]["curve"])
          + " |")
    print("|---" * (3 + len(results[args.variants[0]]["curve"])) + "|")
    for name in args.variants:
        r = results[name]
        print(f"| {name} | {r['parameters'] / 1e6:.2f} M | {'x'.join(map(str, r['latent']))} | " + " | ".join(
            f"{p['psnr']:.2f} dB / {p['ssim']:.3f} ({p['seconds']:.0f} s)" for p in r["curve"]) + " |")
    if args.json:
        from io_utils import save_json

        save_json(args.json, {**results, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
