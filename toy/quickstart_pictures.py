"""The README's quick-start picture: what the first command makes, beside what a perfect prior makes.

    python scripts/quickstart_pictures.py --out docs/quickstart_toy.png
    python scripts/quickstart_pictures.py --input data/toy/toy_100003_rgba.png --views 0 180 --out docs/multiview_toy.png

Runs the README's toy command (configs/toy.yaml, the shipped toy Zero123, both stages) on
``--input`` and the same two stages with the oracle Zero123 (scripts/toy_oracle.py: a denoiser
that knows the object, "what a perfect prior gives"), then draws one small PNG: the input image,
then rows of turntable views (elevation 0, azimuths ``--azimuths``) of stage 1 and stage 2 of each,
and the ground truth. The input must be a held-out toy object's example (data/toy/toy_<seed>_rgba.png)
for the oracle to know it.

With ``--views AZ ...`` (several input views, the first 0): the object's views at those azimuths
(toy_objects.write_view) are the input, and the rows are stage 2 of the toy prior from the first
view alone, from all the views, and of no prior from all the views ("views only"), then the ground
truth; the input tile shows the views side by side.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import toy_objects  # noqa: E402


def views(mesh, azimuths, size):
    from cameras import Camera
    from mesh_renderer import render_mesh

    with torch.no_grad():
        return [render_mesh(mesh, Camera.orbit(0.0, a, toy_objects.RADIUS, toy_objects.FOVY, size), backend="torch")
                ["image"].permute(1, 2, 0).numpy() for a in azimuths]


def draw(rows, input_rgba, azimuths, size, path):
    """A grid: a label column, the input image on the first row, then one row per (label, tiles)."""
    from PIL import Image, ImageDraw

    label_w, head = 150, 18
    W, H = label_w + size * (len(azimuths) + 1), head + size * len(rows)
    canvas = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(canvas)
    d.text((label_w + 4, 3), "input", fill="black")
    for j, a in enumerate(azimuths):
        d.text((label_w + size * (j + 1) + 4, 3), f"azimuth {a:g}", fill="black")
    inputs = input_rgba if isinstance(input_rgba, list) else [input_rgba]  # several views: side by side
    n = len(inputs)
    for k, img in enumerate(inputs):
        rgba = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).resize((size // n, size // n))
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.paste(Image.alpha_composite(white, rgba).convert("RGB"), (label_w + k * (size // n), head + (size - size // n) // 2))
    for i, (label, tiles) in enumerate(rows):
        y = head + size * i
        for k, line in enumerate(label.split("\n")):
            d.text((4, y + size // 2 - 12 + 12 * k), line, fill="black")
        for j, t in enumerate(tiles):
            canvas.paste(Image.fromarray((np.clip(t, 0, 1) * 255 + 0.5).astype(np.uint8)), (label_w + size * (j + 1), y))
    from io_utils import save_image

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_image(path, np.asarray(canvas))


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
    from bench_toy import run_stages
    from guidance.loading import quiet_libraries
    from mesh import Mesh
    from toy_oracle import oracle_builder

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
            rows.append((label, views(Mesh.load(out["fine"]), args.azimuths, args.size)))
        rows.append(("ground truth", views(toy_objects.make_object(seed), args.azimuths, args.size)))
        draw(rows, [load_image(p) for p in paths], args.azimuths, args.size, args.out)
        print(f"wrote {args.out}")
        return 0
    rows = []
    for name, build in (("toy prior", None), ("oracle\n(a perfect prior)", oracle_builder(seed))):
        paths = run_stages(args.config, common + [f"save_path={'oracle' if build else 'toy'}"], True, build)
        rows.append((f"{name}:\nstage 1", views(Mesh.load(paths["coarse"]), args.azimuths, args.size)))
        rows.append((f"{name}:\nstage 2", views(Mesh.load(paths["fine"]), args.azimuths, args.size)))
    rows.append(("ground truth", views(toy_objects.make_object(seed), args.azimuths, args.size)))
    draw(rows, load_image(args.input), args.azimuths, args.size, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
