"""Convert Gaussians between the standard 3DGS .ply and the web viewers' .splat.

    python scripts/convert_splat.py logs/cat_model.ply                 # -> logs/cat_model.splat
    python scripts/convert_splat.py a.ply b.ply --outdir web/          # several at once
    python scripts/convert_splat.py logs/cat_model.splat --out cat.ply # back (DC colour only)

.splat keeps 32 bytes per Gaussian: positions and scales exactly, colour and opacity to 1/255,
rotation to 1/128, and no view-dependent (higher-order SH) colour.
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
    (g.save_splat if dst.lower().endswith(".splat") else g.save_ply)(dst)
    return len(g)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help=".ply or .splat files")
    ap.add_argument("--out", help="output file (one input)")
    ap.add_argument("--outdir", help="output folder (default: beside each input)")
    args = ap.parse_args(argv)
    from cli import error_line, user_errors

    if args.out and len(args.inputs) > 1:
        print("error: --out takes one input; use --outdir for several", file=sys.stderr)
        return 2
    for src in args.inputs:
        ext = os.path.splitext(src)[1].lower()
        if ext not in (".ply", ".splat"):
            print(f"error: {src}: expected a .ply or .splat file", file=sys.stderr)
            return 2
        dst = args.out or os.path.join(args.outdir or os.path.dirname(src),
                                       os.path.splitext(os.path.basename(src))[0] + (".splat" if ext == ".ply" else ".ply"))
        try:
            n = convert(src, dst)
        except user_errors() as e:
            print(error_line(e), file=sys.stderr)
            return 2
        print(f"{dst}: {n} Gaussians")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from cli import guarded

    sys.exit(guarded(main))
