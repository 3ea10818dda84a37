"""Prepare input images: matte RGB images (rembg), recentre and resize; writes <name>_rgba.png.

    python process.py data/cat.jpg                      # -> data/cat_rgba.png
    python process.py data/folder --size 256 --border_ratio 0.2
"""
import argparse
import os
import sys

import numpy as np


def process_file(path, size, do_recenter, border_ratio, out_dir=None):
    from inputs import load_input_image
    from io_utils import save_image

    warnings = []
    rgb, mask = load_input_image(path, size, do_recenter, border_ratio, warnings)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    rgba = np.concatenate([rgb.permute(1, 2, 0).numpy(), mask.permute(1, 2, 0).numpy()], -1)
    name = os.path.splitext(os.path.basename(path))[0].replace("_rgba", "")
    out = os.path.join(out_dir or os.path.dirname(path), f"{name}_rgba.png")
    save_image(out, rgba)
    return out


def main(argv=None):
    from cli import COUNT_ARG

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", help="an image, or a folder of images")
    ap.add_argument("--size", type=COUNT_ARG, default=256, help="output size (square)")
    ap.add_argument("--recenter", type=lambda s: s.lower() in ("1", "true", "yes"), default=True,
                    help="recentre the object (true/false)")
    ap.add_argument("--border_ratio", type=float, default=0.2, help="empty border around the object")
    ap.add_argument("--out", help="output folder (default: beside each input)")
    args = ap.parse_args(argv)
    from inputs import InputError
    from io_utils import OutputError

    if not 0 <= args.border_ratio < 1:  # --size is checked by its argparse type
        print(f"error: --border_ratio must be in [0, 1), got {args.border_ratio}", file=sys.stderr)
        return 2

    if os.path.isdir(args.path):
        files = sorted(os.path.join(args.path, f) for f in os.listdir(args.path)
                       if os.path.splitext(f)[1].lower() in (".png", ".jpg", ".jpeg", ".webp")
                       and not f.endswith("_rgba.png") and os.path.isfile(os.path.join(args.path, f)))
        if not files:
            print(f"error: no images in {args.path} (looked for .png, .jpg, .jpeg, .webp; *_rgba.png are outputs)",
                  file=sys.stderr)
            return 2
    elif not os.path.exists(args.path):
        print(f"error: not found: {args.path}", file=sys.stderr)
        return 2
    else:
        files = [args.path]
    failed = 0
    for f in files:
        try:
            print(f"{f} -> {process_file(f, args.size, args.recenter, args.border_ratio, args.out)}")
        except (InputError, OSError, OutputError) as e:
            print(f"error: {f}: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
