"""The toy prior's learning curve as a picture: held-out novel-view PSNR, mask IoU and the
mirrored-azimuth gap against UNet training hours.

    python toy/plot_curve.py logs/toy_prior_work/curve.json [more/curve.json ...] --out curve.png

Each input is the ``curve.json`` that ``toy/train_prior.py --eval-every N`` writes in its
``--work`` (or a model's ``training.json`` that holds a ``curve``); one line per input, labelled
by its folder. The input view copied is drawn dashed: a prior worth its training lies above it on
PSNR and IoU, and above zero on the gap (conditioning on the mirrored azimuth makes it worse).
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def read_curve(path: str) -> list:
    from io_utils import load_json, require_file

    require_file(path, "learning curve")
    try:
        data = load_json(path)
    except ValueError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    points = data.get("curve") if isinstance(data, dict) else data
    if not isinstance(points, list) or not points or not all(isinstance(p, dict) and "hours" in p for p in points):
        raise ValueError(f"{path} holds no learning curve (toy/train_prior.py --eval-every N writes one in --work)")
    return sorted(points, key=lambda p: p["step"])


def plot(curves: dict, out: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    panels = (("psnr", "novel views PSNR (dB)"), ("iou", "novel views mask IoU"), (None, "PSNR gap, true - mirrored (dB)"))
    for ax, (metric, title) in zip(axes, panels):
        for i, (label, pts) in enumerate(curves.items()):
            h = [p["hours"] for p in pts]
            colour = f"C{i}"
            if metric is None:
                ax.plot(h, [p["prior_psnr"] - p["prior_mirrored_psnr"] for p in pts], "o-", color=colour, label=label)
                ax.axhline(0.0, color="grey", lw=0.8)
            else:
                ax.plot(h, [p[f"prior_{metric}"] for p in pts], "o-", color=colour, label=label)
                ax.plot(h, [p[f"input_copied_{metric}"] for p in pts], "--", color=colour, alpha=0.6,
                        label=f"{label}: input view copied")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("UNet training hours")
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(4, len(names)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("curves", nargs="+", help="curve.json files (or training.json with a curve)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "toy_curve.png"))
    ap.add_argument("--labels", nargs="+", help="one label per curve (default: each file's folder name)")
    args = ap.parse_args(argv)
    if args.labels and len(args.labels) != len(args.curves):
        raise ValueError(f"--labels gives {len(args.labels)} labels for {len(args.curves)} curves")
    labels = args.labels or [os.path.basename(os.path.dirname(os.path.abspath(p))) for p in args.curves]
    curves = {label: read_curve(p) for label, p in zip(labels, args.curves)}
    plot(curves, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
