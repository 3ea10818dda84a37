"""Convert Gaussians between splat formats, by the destination's file name ending.

    python scripts/convert_splat.py logs/cat_model.ply                         # -> logs/cat_model.splat
    python scripts/convert_splat.py a.ply b.ply --outdir web/                  # several at once
    python scripts/convert_splat.py logs/cat_model.splat --out cat.ply         # back (DC colour only)
    python scripts/convert_splat.py logs/cat_model.ply --out cat.compressed.ply   # PlayCanvas / SuperSplat

Reads the standard 3DGS .ply, PlayCanvas's .compressed.ply (told apart by its content, whatever
its name) and .splat; writes .ply, .compressed.ply and .splat. Any other destination ending is a
one-line error, before anything is read or written. What each keeps: .ply everything (float32);
.compressed.ply every SH band, quantised (positions and log scales to 11/10/11 bits of their
256-Gaussian chunk's range, colour and opacity to 8 bits, rotations to 10 bits, SH rest to 8 bits
over [-4, 4]); .splat 32 bytes per Gaussian: positions and scales exactly, colour and opacity to
1/255, rotation to 1/128, and no view-dependent (higher-order SH) colour.
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

def convert(src: str, dst: str) -> int:
    from gaussians import GaussianModel

    g = GaussianModel.load(src)
    g.check()
    g.save(dst)
    return len(g)


def writable(path: str) -> bool:
    from splat_formats import GAUSSIAN_EXTENSIONS

    return path.lower().endswith(GAUSSIAN_EXTENSIONS)


def default_output(src: str, outdir: str | None) -> str:
    """Beside the input (or in ``outdir``): a .ply becomes .splat, anything else .ply."""
    name = os.path.basename(src)
    low = name.lower()
    stem = name[:-len(".compressed.ply")] if low.endswith(".compressed.ply") else os.path.splitext(name)[0]
    ext = ".splat" if low.endswith(".ply") and not low.endswith(".compressed.ply") else ".ply"
    return os.path.join(outdir or os.path.dirname(src), stem + ext)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help=".ply, .compressed.ply or .splat files")
    ap.add_argument("--out", help="output file (one input); its ending chooses the format")
    ap.add_argument("--outdir", help="output folder (default: beside each input)")
    args = ap.parse_args(argv)
    from cli import error_line, user_errors

    if args.out and len(args.inputs) > 1:
        print("error: --out takes one input; use --outdir for several", file=sys.stderr)
        return 2
    from splat_formats import GAUSSIAN_EXTENSIONS

    if args.out and not writable(args.out):
        print(f"error: {args.out}: cannot write Gaussians as '{os.path.splitext(args.out)[1] or args.out}'; writable: "
              f"{', '.join(GAUSSIAN_EXTENSIONS)}", file=sys.stderr)
        return 2
    for src in args.inputs:
        if not src.lower().endswith(GAUSSIAN_EXTENSIONS):
            print(f"error: {src}: expected a {', '.join(GAUSSIAN_EXTENSIONS)} file", file=sys.stderr)
            return 2
        dst = args.out or default_output(src, args.outdir)
        try:
            n = convert(src, dst)
        except user_errors() as e:
            print(error_line(e), file=sys.stderr)
            return 2
        print(f"{dst}: {n} Gaussians")
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
