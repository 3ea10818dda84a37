"""The README's quick-start picture: what the first command makes, beside what a perfect prior makes.

    python toy/quickstart_pictures.py --out docs/quickstart_toy.png
    python toy/quickstart_pictures.py --input data/toy/toy_100003_rgba.png --views 0 180 --out docs/input_views_toy.png

Runs the README's toy command (configs/toy.yaml, the shipped toy Zero123, both stages) on
``--input`` and the same two stages with the oracle Zero123 (toy/oracle.py: a denoiser
that knows the object, "what a perfect prior gives"), then draws one small PNG: the input image,
then rows of turntable views (elevation 0, azimuths ``--azimuths``) of stage 1 and stage 2 of each,
and the ground truth. The input must be a held-out toy object's example (data/toy/toy_<seed>_rgba.png)
for the oracle to know it.

With ``--views AZ ...`` (several input views, the first 0): the object's views at those azimuths
(toy/objects.py write_view) are the input, and the rows are stage 2 of the toy prior from the first
view alone, from all the views, and of no prior from all the views ("views only"), then the ground
truth; the input tile shows the views side by side.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from toy import objects as toy_objects  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default=os.path.join(ROOT, "data", "toy", "toy_100000_rgba.png"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "quickstart_toy.png"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "toy-zero123"))
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "toy.yaml"))
    ap.add_argument("--work", default=os.path.join(ROOT, "logs", "quickstart_pictures"))
    ap.add_argument("--azimuths", type=float, nargs="+", default=[0.0, 90.0, 180.0, 270.0])
    ap.add_argument("--size", type=int, default=96, help="tile size in pixels")
    ap.add_argument("--views", type=float, nargs="+", help="several input views at these azimuths (the first 0)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    match = re.fullmatch(r"toy_(\d+)_rgba\.png", os.path.basename(args.input))
    if not match or int(match.group(1)) < toy_objects.HELDOUT_START:
        print(f"error: {args.input} is not a held-out toy example (toy_<seed>_rgba.png, seed >= "
              f"{toy_objects.HELDOUT_START}): the oracle must know the object", file=sys.stderr)
        return 2
    from io_utils import load_image, require_file

    require_file(args.input, "input image")
    if args.views and (args.views[0] != 0 or len(set(args.views)) != len(args.views)):
        print(f"error: --views must start at 0 and repeat no azimuth, got {args.views}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    from guidance.loading import quiet_libraries
    from mesh import Mesh
    from toy.oracle import oracle_builder
    from toy.pictures import draw, render_azimuths
    from toy.runs import run_stages

    quiet_libraries()
    seed = int(match.group(1))
    common = [f"input={args.input}", f"outdir={args.work}", f"guidance_model={args.model}", "quiet=true"]
    if args.views:
        paths = [toy_objects.write_view(seed, os.path.join(args.work, "views"), a) for a in args.views]
        several = [f"input=[{','.join(paths)}]", f"input_azimuths=[{','.join(f'{a:g}' for a in args.views)}]",
                   f"outdir={args.work}", f"guidance_model={args.model}", "quiet=true"]
        rows = []
        for label, overrides in (("toy prior,\n1 view", [f"input={paths[0]}", *common[1:], "save_path=mv1"]),
                                 (f"toy prior,\n{len(paths)} views", several + ["save_path=mvn"]),
                                 (f"no prior,\n{len(paths)} views", several + ["lambda_zero123=0", "save_path=mv0"])):
            out = run_stages(args.config, overrides, True)
            rows.append((label, render_azimuths(Mesh.load(out["fine"]), args.azimuths, args.size)))
        rows.append(("ground truth", render_azimuths(toy_objects.make_object(seed), args.azimuths, args.size)))
        draw(rows, [load_image(p) for p in paths], args.azimuths, args.size, args.out)
        print(f"wrote {args.out}")
        return 0
    rows = []
    for name, build in (("toy prior", None), ("oracle\n(a perfect prior)", oracle_builder(seed))):
        paths = run_stages(args.config, common + [f"save_path={'oracle' if build else 'toy'}"], True, build)
        rows.append((f"{name}:\nstage 1", render_azimuths(Mesh.load(paths["coarse"]), args.azimuths, args.size)))
        rows.append((f"{name}:\nstage 2", render_azimuths(Mesh.load(paths["fine"]), args.azimuths, args.size)))
    rows.append(("ground truth", render_azimuths(toy_objects.make_object(seed), args.azimuths, args.size)))
    draw(rows, load_image(args.input), args.azimuths, args.size, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
