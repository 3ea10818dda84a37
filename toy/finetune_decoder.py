"""Fine-tune the toy prior's VAE decoder in its model folder, the encoder frozen (as Stability's
sd-vae-ft-mse fine-tuned Stable Diffusion's): the latents, the UNet trained on them and everything
stage 1 does stay exactly as they were; what is decoded (stage 2's SDEdit targets, the prior's own
novel views) gets sharper.

    python toy/finetune_decoder.py --model models/toy-zero123 --steps 4000 --threads 1

Renders the training objects as toy/train_prior.py does (cached in --work), trains the decoder and
post_quant_conv with toy.prior.train_vae(part="decoder") on a cosine schedule (resumable:
the same command continues from --work's checkpoint), scores the round trip of held-out renders
before and after (toy.evaluation.vae_roundtrip), then replaces the folder's vae/ (written beside
it and renamed) and appends the run to its training.json ("decoder_finetune"). A folder whose
decoder was already fine-tuned is refused unless --again (a second round from it).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None):
    from cli import COUNT_ARG, NONNEG_INT_ARG, POSITIVE_ARG

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "toy-zero123"),
                    help="toy Zero123 folder (toy/train_prior.py's layout); its vae/ is replaced")
    ap.add_argument("--work", default=os.path.join(ROOT, "logs", "toy_decoder_work"),
                    help="render cache and resumable checkpoint")
    ap.add_argument("--objects", type=COUNT_ARG, default=1000, help="training objects (seeds 0..N-1)")
    ap.add_argument("--views", type=COUNT_ARG, default=10, help="renders per object")
    ap.add_argument("--steps", type=COUNT_ARG, default=4000, help="decoder steps (cosine schedule over them)")
    ap.add_argument("--batch", type=COUNT_ARG, default=32)
    ap.add_argument("--lr", type=POSITIVE_ARG, default=1e-3)
    ap.add_argument("--eval-objects", type=COUNT_ARG, default=16, help="held-out objects (x 4 views) scored before and after")
    ap.add_argument("--again", action="store_true", help="fine-tune a decoder that was fine-tuned already")
    ap.add_argument("--seed", type=NONNEG_INT_ARG, default=0)
    ap.add_argument("--threads", type=NONNEG_INT_ARG, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)

    from diffusers import AutoencoderKL

    from io_utils import load_json, require_file, save_json
    from toy import objects as toy_objects
    from toy.evaluation import autoencode, vae_roundtrip
    from toy.prior import RESOLUTION, make_data, train_vae

    vae_dir = os.path.join(args.model, "vae")
    require_file(os.path.join(vae_dir, "config.json"), "toy prior's VAE (a toy/train_prior.py folder)")
    record_path = os.path.join(args.model, "training.json")
    record = load_json(record_path) if os.path.isfile(record_path) else {}
    if record.get("decoder_finetune") and not args.again:
        print(f"error: {args.model}'s decoder was fine-tuned already ({len(record['decoder_finetune'])} run(s) in "
              f"training.json); pass --again for another round from it", file=sys.stderr)
        return 2
    if args.objects > len(toy_objects.TRAIN_SEEDS):
        print(f"error: --objects must be at most {len(toy_objects.TRAIN_SEEDS)}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    meta = {"model": os.path.abspath(args.model), "objects": args.objects, "views": args.views, "steps": args.steps,
            "batch": args.batch, "lr": args.lr, "seed": args.seed}
    meta_path = os.path.join(args.work, "args.json")
    if os.path.isfile(meta_path) and load_json(meta_path) != meta:
        print(f"error: {args.work} holds a fine-tune with other settings ({meta_path}); use another --work or delete it",
              file=sys.stderr)
        return 2
    save_json(meta_path, meta)

    vae = AutoencoderKL.from_pretrained(vae_dir)
    vae.eval()
    frozen = {k: v.clone() for k, v in vae.state_dict().items() if not k.startswith(("decoder.", "post_quant_conv."))}

    roundtrip = autoencode(vae)
    before = vae_roundtrip(None, args.eval_objects, roundtrip=roundtrip, size=RESOLUTION)
    print(f"held-out round trip before: {before['psnr']:.2f} dB, SSIM {before['ssim']:.3f}", file=sys.stderr)
    t0 = time.time()
    data = make_data(os.path.join(args.work, "data.pt"), args.objects, args.views)
    t_data = time.time() - t0
    state = train_vae(vae, data["images"], args.steps, args.batch, args.lr, args.work, args.seed, part="decoder")
    t_train = time.time() - t0 - t_data
    after = vae_roundtrip(None, args.eval_objects, roundtrip=roundtrip, size=RESOLUTION)
    print(f"held-out round trip after: {after['psnr']:.2f} dB, SSIM {after['ssim']:.3f}", file=sys.stderr)
    for k, v in vae.state_dict().items():  # the latents the UNet was trained on must not move
        if k in frozen and not torch.equal(v, frozen[k]):
            raise RuntimeError(f"encoder weight {k} changed during a decoder fine-tune")

    tmp = vae_dir.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    vae.save_pretrained(tmp, safe_serialization=True)
    config_path = os.path.join(tmp, "config.json")  # as toy.prior.export writes it: no local path inside
    config = load_json(config_path)
    config.pop("_name_or_path", None)
    save_json(config_path, config)
    old = vae_dir.rstrip("/") + ".old"
    shutil.rmtree(old, ignore_errors=True)
    os.replace(vae_dir, old)
    os.replace(tmp, vae_dir)
    shutil.rmtree(old)
    run = {**{k: v for k, v in meta.items() if k != "model"}, "date": time.strftime("%Y-%m-%d"),
           "torch_threads": torch.get_num_threads(), "seconds": {"data": round(t_data, 1), "train": round(t_train, 1)},
           "recon_loss_last100": float(sum(state["losses"][-100:]) / max(len(state["losses"][-100:]), 1)),
           "heldout_roundtrip": {"objects": args.eval_objects, "views": 4, "before": before, "after": after},
           "command": "python toy/finetune_decoder.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    record.setdefault("decoder_finetune", []).append(run)
    save_json(record_path, record)  # atomically: the record of every earlier run is in it
    print(json.dumps(run, indent=1))
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
