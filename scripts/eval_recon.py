"""Evaluate a reconstructed textured mesh against the ground truth.

    python scripts/eval_recon.py --pred logs/spot.obj --gt data/spot/spot_triangulated.obj
    python scripts/eval_recon.py --pred logs/x.obj --gt path/to/test_views   (transforms.json folder)

Geometry (mesh ground truth): Chamfer-L1 (mean of both directions' mean nearest distances) and
F-score at 1% of the ground-truth bounding-box diagonal, from surface samples. Appearance: PSNR
and SSIM of renders over a white background and mask IoU, at held-out cameras that training
never used (a Fibonacci set offset from the training set), or at the given test views.
Prints JSON and a table; ``--grid`` writes a PNG of ground truth (top) over ours (bottom).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    from cli import COUNT_ARG, FOVY_ARG, POSITIVE_ARG

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pred", required=True, help="reconstructed mesh (.obj/.glb)")
    ap.add_argument("--gt", required=True, help="ground-truth mesh, or a transforms.json folder of test views")
    ap.add_argument("--views", type=COUNT_ARG, default=16, help="held-out views (mesh ground truth)")
    ap.add_argument("--resolution", type=COUNT_ARG, default=256)
    ap.add_argument("--radius", type=POSITIVE_ARG, default=2.0)
    ap.add_argument("--fovy", type=FOVY_ARG, default=49.1)
    ap.add_argument("--grid", help="write a ground truth | ours image grid here (.png)")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    for p in (args.pred, args.gt):
        if not os.path.exists(p):
            print(f"error: not found: {p}", file=sys.stderr)
            return 2
    from cli import error_line, user_errors
    from metrics import evaluate

    try:
        r = evaluate(args.pred, args.gt, args.views, args.resolution, args.radius, args.fovy, args.grid)
    except user_errors() as e:  # an unreadable mesh or views: one line, no traceback
        print(error_line(e), file=sys.stderr)
        return 2
    for w in r["warnings"]:  # e.g. an uncoloured ground truth: its colour metrics compare against grey
        print(f"warning: {w}", file=sys.stderr)
    print(json.dumps(r))
    print("\n| metric | value |\n|---|---|")
    for k in ("chamfer_l1", "fscore", "psnr", "ssim", "mask_iou"):
        if k in r:
            print(f"| {k} | {r[k]:.4f} |")
    if args.json:  # with the machine it was measured on (the README's figures come from such files)
        from io_utils import save_json
        from outputs import machine_info

        save_json(args.json, {**r, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
