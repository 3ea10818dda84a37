"""Prepare input images: matte RGB images (rembg), recentre and resize; writes <name>_rgba.png.

    python process.py data/cat.jpg                      # -> data/cat_rgba.png
    python process.py data/folder --size 256 --border_ratio 0.2
"""
import argparse
import glob
import os
import sys

import numpy as np


def process_file(path, size, do_recenter, border_ratio, out_dir=None):
    from inputs import load_input_image
    from io_utils import save_image

    rgb, mask = load_input_image(path, size, do_recenter, border_ratio)
    rgba = np.concatenate([rgb.permute(1, 2, 0).numpy(), mask.permute(1, 2, 0).numpy()], -1)
    name = os.path.splitext(os.path.basename(path))[0].replace("_rgba", "")
    out = os.path.join(out_dir or os.path.dirname(path), f"{name}_rgba.png")
    save_image(out, rgba)
    return out


def main(argv=None):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", help="an image, or a folder of images")
    ap.add_argument("--size", type=int, default=256, help="output size (square)")
    ap.add_argument("--recenter", type=lambda s: s.lower() in ("1", "true", "yes"), default=True,
                    help="recentre the object (true/false)")
    ap.add_argument("--border_ratio", type=float, default=0.2, help="empty border around the object")
    ap.add_argument("--out", help="output folder (default: beside each input)")
    args = ap.parse_args(argv)
    from inputs import InputError

    if os.path.isdir(args.path):
        files = sorted(f for e in ("png", "jpg", "jpeg", "webp") for f in glob.glob(os.path.join(args.path, f"*.{e}"))
                       if not f.endswith("_rgba.png"))
    else:
        files = [args.path]
    failed = 0
    for f in files:
        try:
            print(f"{f} -> {process_file(f, args.size, args.recenter, args.border_ratio, args.out)}")
        except (InputError, FileNotFoundError) as e:
            print(f"error: {f}: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
