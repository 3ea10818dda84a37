"""How ``benchmarks/bench_input_views.py`` judges runs from several input views: which of the 8
views around no input faces (``unseen_azimuths``), and per run and view set the means over objects,
with on how many objects the largest view set beats one view on every metric (``summarise``).
"""
from __future__ import annotations

import argparse

import numpy as np

from toy.runs import IOU_AZIMUTHS

RUNS = ("oracle", "trained", "no_prior")
VIEW_SETS = ("0", "0,180", "0,90,180")  # input azimuths of each configuration
METRICS = ("chamfer", "fscore_5", "iou", "iou_unseen", "psnr_unseen")
EXTRA = ("fscore_1",)  # reported, not counted in "beats on every metric"
LOWER_IS_BETTER = ("chamfer",)


def parse_view_set(text: str) -> list:
    try:
        azimuths = [float(a) for a in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a view set is azimuths joined by commas (e.g. 0,90,180), got {text!r}")
    if not azimuths or azimuths[0] != 0:
        raise argparse.ArgumentTypeError(f"a view set starts at azimuth 0 (the first input view), got {text!r}")
    return azimuths


def unseen_azimuths(view_sets) -> list:
    """The azimuths of IOU_AZIMUTHS at least 90 degrees from every input view of every set."""
    def apart(a, b):
        return abs((a - b + 180) % 360 - 180)
    every = [a for vs in view_sets for a in vs]
    return [a for a in IOU_AZIMUTHS if all(apart(a, b) >= 90 - 1e-6 for b in every)]


def mean(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def better(a, b, metric) -> bool:
    if a is None or b is None:
        return a is not None
    return a < b if metric in LOWER_IS_BETTER else a > b


def summarise(results, runs, sets) -> dict:
    """Per run and view set, the means over objects; and on how many objects the largest view set
    beats one view on every metric (same prior), and views beat ... for the trained prior over views only."""
    seeds = [s for s in results if s.isdigit()]
    out = {}
    for run in runs:
        for vs in sets:
            rows = [{m: mean(results[s][run][vs], m) for m in METRICS + EXTRA} for s in seeds]
            out[f"{run}/{vs}"] = {m: mean(rows, m) for m in METRICS + EXTRA}
        first, last = sets[0], sets[-1]

        def wins(s, m, run=run):  # the largest view set ahead of one view on object s
            return better(mean(results[s][run][last], m), mean(results[s][run][first], m), m)

        beats = [all(wins(s, m) for m in METRICS) for s in seeds]
        out[f"{run}: {last} beats {first} on every metric"] = f"{sum(beats)} of {len(seeds)}"
        for m in EXTRA:  # older result files lack it
            if all(mean(results[s][run][vs], m) is not None for s in seeds for vs in (first, last)):
                out[f"{run}: {last} beats {first} on {m}"] = f"{sum(wins(s, m) for s in seeds)} of {len(seeds)}"
    if "trained" in runs and "no_prior" in runs:
        for vs in sets:
            gain = {m: (out[f"trained/{vs}"][m] or 0) - (out[f"no_prior/{vs}"][m] or 0) for m in ("iou_unseen", "psnr_unseen")}
            out[f"trained minus views only at the unseen views, {vs}"] = gain
    return out


def table(summary, runs, sets) -> str:
    lines = ["| run | views (azimuths) | Chamfer | F-score@5% | IoU (8 views) | IoU unseen | PSNR unseen | F-score@1% |",
             "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        for vs in sets:
            r = summary[f"{run}/{vs}"]
            f = [("-" if r[m] is None else f"{r[m]:.4f}" if m == "chamfer" else f"{r[m]:.2f}" if m == "psnr_unseen"
                  else f"{r[m]:.3f}") for m in METRICS + EXTRA]
            lines.append(f"| {run} | {vs} | " + " | ".join(f) + " |")
    return "\n".join(lines)
