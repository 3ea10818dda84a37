"""The toy Zero123's own quality, without a 3D run: is it underfit (held-out objects as good as
training ones, both poor) or overfit (held-out much worse)? And does its input view help?

    python toy/eval_prior.py --models models/toy-zero123 [other/folder ...] --json out.json

Per model, loaded as ``guidance_model=`` loads it (guidance.zero123): ``--objects`` training
objects (seeds 0..N-1) and as many held-out ones (from toy/objects.py HELDOUT_START), each seen from
image mode's input view (elevation 0, azimuth 0) and ``--views`` orbit views. For the pairs (input
view -> each view), through the guidance's own conditioning (its camera embedding, its CLIP and
VAE path): the epsilon MSE at fixed timesteps with the conditions (``eps``) and with both dropped
(``eps_uncond``, the classifier-free branch), and the MSE of the implied clean latent (``x0``).
``gain`` = 1 - eps / eps_uncond: how much the input view and the camera tell the model;
``heldout_mirrored``: the same held-out pairs conditioned on the azimuths negated (does the model
know left from right?); ``heldout_still``: conditioned on the input view's own camera (does it use
its camera at all?).
Then the DDIM novel views (toy.evaluation.novel_views) on ``--novel`` held-out objects (PSNR and mask
IoU against the truth, beside the input view copied).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None):
    from cli import COUNT_ARG, NONNEG_INT_ARG, POSITIVE_ARG

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=[os.path.join(ROOT, "models", "toy-zero123")])
    ap.add_argument("--objects", type=COUNT_ARG, default=50, help="objects per split (training, held-out)")
    ap.add_argument("--views", type=COUNT_ARG, default=8, help="target views per object")
    ap.add_argument("--novel", type=NONNEG_INT_ARG, default=16,
                    help="held-out objects for the DDIM novel views (0: none)")
    ap.add_argument("--guidance-scale", type=POSITIVE_ARG, default=3.0,
                    help="CFG scale of the novel views (configs/toy.yaml's)")
    ap.add_argument("--work", default=os.path.join(ROOT, "logs", "eval_toy_prior"),
                    help="inputs and view grids, a folder per model")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--threads", type=NONNEG_INT_ARG, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    for m in args.models:
        if not os.path.isfile(os.path.join(m, "model_index.json")):
            raise ValueError(f"no toy model at {m} (python toy/train_prior.py --out {m})")
    if args.threads:
        torch.set_num_threads(args.threads)
    from guidance.loading import quiet_libraries

    from toy.evaluation import evaluate, table

    quiet_libraries()
    # each model's novel-view grids in a folder of its own (they are named by object seed)
    results = {m: evaluate(m, args.objects, args.views, args.novel,
                           os.path.join(args.work, f"{i}_{os.path.basename(os.path.normpath(m))}"), args.guidance_scale)
               for i, m in enumerate(args.models)}
    print(table(results))
    if args.json:
        from io_utils import save_json
        from outputs import machine_info

        save_json(args.json, {**results, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
