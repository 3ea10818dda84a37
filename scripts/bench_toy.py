"""Does the generative loop turn one image into the right 3D object? Measured with the toy prior
on objects it never saw.

    python scripts/bench_toy.py --seeds 100000 100001 100002 100003 100004 100005 100006 100007 \
        --repeats 3 --json bench_results/toy.json

For each object seed (any seed from toy_objects.HELDOUT_START on: the object is made on the fly)
the front view (image mode's input camera) is rendered and three image-to-3D runs are made from
it with configs/toy.yaml, ``--repeats`` times each (random seeds 0..R-1):

  trained     the shipped toy Zero123 (``--model``)
  untrained   the same architecture and layout with random weights (written once to ``--work``)
  no_prior    lambda_zero123=0: the input view's RGB and mask losses only

Each run is stage 1 (Gaussians, then the coarse mesh); stage 2 only refines the texture and no
metric here reads colour. With ``recenter: false`` (configs/toy.yaml) image mode's frame is the
object's own (extent 1, centred, input camera at azimuth 0), so the output is compared to the
ground truth as it is. Per run: Chamfer-L1 and F-score at 1 % of the ground truth's bounding-box
diagonal (eval_recon's, 50k surface samples; ``fscore_5`` at 5 %: at 64 px one pixel is about
2 % of the diagonal, so 1 % is sub-pixel), mask IoU over 8 views around the object (elevation
0, azimuths 0, 45, ..., 315) and ``iou_back``, the mean over the 3 that face away from the input
(135, 180, 225). ``novel_views`` reports the prior itself: PSNR and mask IoU of its DDIM samples
(50 steps from noise) at azimuth offsets 90, 180 and 270 against ground-truth renders, beside the
input view copied there.

JSON: {"<seed>": {"trained": [per repeat {chamfer, fscore, iou, iou_back}], "untrained": [...],
"no_prior": [...], "novel_views": {...}, "wins": {...}}, "summary": {...}}. A win on a metric: the
trained prior's mean beats both baselines' means by more than the largest standard deviation
over the repeats of the three runs.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import toy_objects  # noqa: E402
from cameras import Camera  # noqa: E402
from mesh_renderer import render_mesh  # noqa: E402

RUNS = ("trained", "untrained", "no_prior")
IOU_AZIMUTHS = [45.0 * i for i in range(8)]
BACK = (135.0, 180.0, 225.0)
NOVEL_OFFSETS = (90.0, 180.0, 270.0)
METRICS = ("chamfer", "fscore", "fscore_5", "iou", "iou_back")


def masks_iou(pred, gt, resolution=128):
    """Mask IoU of meshes ``pred`` and ``gt`` per azimuth of IOU_AZIMUTHS (elevation 0)."""
    out = {}
    with torch.no_grad():
        for az in IOU_AZIMUTHS:
            cam = Camera.orbit(0.0, az, toy_objects.RADIUS, toy_objects.FOVY, resolution)
            a = render_mesh(pred, cam, backend="torch")["alpha"] > 0.5
            b = render_mesh(gt, cam, backend="torch")["alpha"] > 0.5
            out[az] = float((a & b).sum()) / max(1, int((a | b).sum()))
    return out


def mesh_metrics(pred, gt, samples=50000) -> dict:
    from eval_recon import chamfer_fscore

    cf = chamfer_fscore(pred, gt, samples)
    cf5 = chamfer_fscore(pred, gt, samples, tau_ratio=0.05)
    ious = masks_iou(pred, gt)
    return {"chamfer": cf["chamfer_l1"], "fscore": cf["fscore"], "fscore_5": cf5["fscore"],
            "iou": float(np.mean(list(ious.values()))),
            "iou_back": float(np.mean([ious[a] for a in BACK])), "iou_per_view": [round(v, 4) for v in ious.values()]}


def failed_metrics(reason: str) -> dict:
    """A run that produced no surface: the worst score on every metric."""
    return {"chamfer": None, "fscore": 0.0, "fscore_5": 0.0, "iou": 0.0, "iou_back": 0.0, "error": reason}


def untrained_model(folder: str) -> str:
    """The toy architecture and layout with its random initial weights (train_toy_prior's models)."""
    if os.path.isfile(os.path.join(folder, "model_index.json")):
        return folder
    from train_toy_prior import build_models, export

    vae, unet, clip, proj = build_models(seed=12345)
    export(folder, vae, unet, clip, proj, {"untrained": True, "init_seed": 12345})
    return folder


def run_stage1(cfg_path, overrides, log=lambda *a: None) -> str:
    """One stage-1 run in this process; returns the coarse mesh's path."""
    from config import load_config
    from trainer import Stage1

    cfg = load_config(cfg_path, overrides)
    s1 = Stage1(cfg, log=log)
    s1.run()
    return s1.paths["coarse"]


def one_run(run, seed, repeat, example, model, untrained, work, cfg_path, extra, reuse=False) -> dict:
    from mesh import Mesh
    from mesh_utils import NoSurfaceError

    png, ply = example
    overrides = [f"input={png}", f"save_path={seed}_{run}_{repeat}", f"outdir={work}", f"seed={repeat}",
                 "quiet=true"] + list(extra)
    if run == "trained":
        overrides.append(f"guidance_model={model}")
    elif run == "untrained":
        overrides.append(f"guidance_model={untrained}")
    else:
        overrides.append("lambda_zero123=0")
    t0 = time.perf_counter()
    done = os.path.join(work, f"{seed}_{run}_{repeat}_mesh.obj")
    try:
        path = done if reuse and os.path.isfile(done) else run_stage1(cfg_path, overrides)
    except NoSurfaceError as e:
        return {**failed_metrics(str(e)), "seconds": round(time.perf_counter() - t0, 1)}
    m = mesh_metrics(Mesh.load(path), Mesh.load(ply))
    m["seconds"] = round(time.perf_counter() - t0, 1)
    return m


# ------------------------------------------------------------------------ the prior's own views
def _mask(img, thresh=0.9):
    """Foreground of an image on white: any channel below ``thresh``."""
    return (img < thresh).any(0)


@torch.no_grad()
def novel_views(model, seed, example, guidance_scale, steps=50, resolution=64) -> dict:
    """The prior's DDIM samples at azimuth offsets NOVEL_OFFSETS from the input view, against the
    ground truth's renders there, and the input view copied as the baseline."""
    from cameras import View
    from guidance.zero123 import Zero123Guidance
    from inputs import load_input_image
    from io_utils import save_image

    png, _ = example
    g = Zero123Guidance(model, guidance_scale=guidance_scale, seed=seed)
    size = g.image_size
    rgb, mask = load_input_image(png, size, do_recenter=False)
    g.prepare(image=rgb, mask=mask, elevation=0.0, radius=toy_objects.RADIUS)
    gt_mesh = toy_objects.make_object(seed)
    views = [View(Camera.orbit(0.0, a, toy_objects.RADIUS, toy_objects.FOVY, size), 0.0, a, toy_objects.RADIUS)
             for a in NOVEL_OFFSETS]
    gt, _ = toy_objects.render_views(gt_mesh, [v.camera for v in views])
    inp = (rgb * mask + (1 - mask))[None].expand(len(views), -1, -1, -1)
    pred = g.refine(inp.clone(), views, strength=0.0, steps=steps)  # strength 0: from pure noise

    def scores(x):
        ps = [float(-10 * torch.log10(((a - b) ** 2).mean().clamp_min(1e-10))) for a, b in zip(x, gt)]
        ious = []
        for a, b in zip(x, gt):
            ma, mb = _mask(a), _mask(b)
            ious.append(float((ma & mb).sum()) / max(1, int((ma | mb).sum())))
        return {"psnr": float(np.mean(ps)), "iou": float(np.mean(ious)), "psnr_per_view": [round(p, 2) for p in ps],
                "iou_per_view": [round(i, 3) for i in ious]}
    grid = torch.cat([torch.cat(list(gt), 2), torch.cat(list(pred), 2)], 1)
    grid_path = os.path.join(os.path.dirname(png), f"novel_views_{seed}.png")
    save_image(grid_path, grid.permute(1, 2, 0).numpy())
    return {"prior": scores(pred), "input_copied": scores(inp), "grid": grid_path}


# ---------------------------------------------------------------------------------- summary
def wins(entry) -> dict:
    out = {}
    for metric in ("iou_back", "fscore", "fscore_5"):
        if not all(metric in x for r in RUNS if r in entry for x in entry[r]):
            continue
        means = {r: float(np.mean([x[metric] for x in entry[r]])) for r in RUNS if r in entry}
        stds = {r: float(np.std([x[metric] for x in entry[r]])) for r in RUNS if r in entry}
        if "trained" not in means or len(means) < 2:
            continue
        best_other = max(v for r, v in means.items() if r != "trained")
        spread = max(stds.values())
        out[metric] = {"margin": means["trained"] - best_other, "spread": spread,
                       "win": bool(means["trained"] - best_other > spread)}
    return out


def summarise(results: dict) -> dict:
    seeds = [k for k in results if k != "summary"]
    summary = {}
    for run in RUNS:
        rows = [x for s in seeds for x in results[s].get(run, [])]
        if not rows:
            continue
        summary[run] = {m: float(np.mean([x[m] for x in rows if x.get(m) is not None])) if any(
            x.get(m) is not None for x in rows) else None for m in METRICS}
        summary[run]["failed"] = sum("error" in x for x in rows)
    for metric in ("iou_back", "fscore", "fscore_5"):
        summary[f"wins_{metric}"] = sum(results[s]["wins"].get(metric, {}).get("win", False) for s in seeds)
    summary["wins_both"] = sum(all(results[s]["wins"].get(m, {}).get("win", False) for m in ("iou_back", "fscore"))
                               for s in seeds)
    summary["objects"] = len(seeds)
    nv = [results[s]["novel_views"] for s in seeds if "novel_views" in results[s]]
    if nv:
        summary["novel_views"] = {k: {m: float(np.mean([x[k][m] for x in nv])) for m in ("psnr", "iou")}
                                  for k in ("prior", "input_copied")}
    return summary


def table(results) -> str:
    lines = ["| object | run | Chamfer-L1 | F-score@1% | F-score@5% | mask IoU (8 views) | IoU back (3 views) |",
             "|---|---|---|---|---|---|---|"]
    for s in [k for k in results if k != "summary"]:
        for run in RUNS:
            rows = results[s].get(run)
            if not rows:
                continue

            def ms(m):
                vals = [x[m] for x in rows if x.get(m) is not None]
                return f"{np.mean(vals):.4f} ± {np.std(vals):.4f}" if vals else "failed"
            lines.append(f"| {s} | {run} | {ms('chamfer')} | {ms('fscore')} | {ms('fscore_5')} | {ms('iou')} | "
                         f"{ms('iou_back')} |")
    sm = results["summary"]
    lines.append("")
    lines.append("| run | Chamfer-L1 | F-score@1% | F-score@5% | mask IoU | IoU back | failed runs |")
    lines.append("|---|---|---|---|---|---|---|")
    for run in RUNS:
        if run in sm:
            r = sm[run]
            fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
            lines.append(f"| {run} | {fmt(r['chamfer'])} | {fmt(r['fscore'])} | {fmt(r['fscore_5'])} | {fmt(r['iou'])} | "
                         f"{fmt(r['iou_back'])} | {r['failed']} |")
    lines.append(f"\ntrained beats both baselines by more than the spread: iou_back on {sm['wins_iou_back']}, "
                 f"fscore on {sm['wins_fscore']}, both on {sm['wins_both']} of {sm['objects']} objects "
                 f"(fscore_5: {sm['wins_fscore_5']})")
    if "novel_views" in sm:
        nv = sm["novel_views"]
        lines.append(f"prior's novel views (azimuth +90/180/270): PSNR {nv['prior']['psnr']:.2f} dB, mask IoU "
                     f"{nv['prior']['iou']:.3f}; input view copied: PSNR {nv['input_copied']['psnr']:.2f} dB, "
                     f"mask IoU {nv['input_copied']['iou']:.3f}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", required=True, help=f"object seeds (>= {toy_objects.HELDOUT_START})")
    ap.add_argument("--repeats", type=int, default=3, help="random seeds per run")
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "toy-zero123"))
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "toy.yaml"))
    ap.add_argument("--work", default=os.path.join(ROOT, "logs", "bench_toy"))
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--reuse", action="store_true",
                    help="score the meshes a previous run left in --work instead of running those runs again")
    ap.add_argument("overrides", nargs="*", help="extra key=value config overrides for every run")
    args = ap.parse_args(argv)
    bad = [s for s in args.seeds if s < toy_objects.HELDOUT_START]
    if bad:
        print(f"error: seeds {bad} are training objects; held-out objects start at {toy_objects.HELDOUT_START}",
              file=sys.stderr)
        return 2
    if args.repeats < 1:
        print("error: --repeats must be at least 1", file=sys.stderr)
        return 2
    if not os.path.isfile(os.path.join(args.model, "model_index.json")):
        print(f"error: no toy model at {args.model} (python scripts/train_toy_prior.py --out {args.model})",
              file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    from guidance.loading import quiet_libraries
    from trainer import progress

    quiet_libraries()
    os.makedirs(args.work, exist_ok=True)
    untrained = untrained_model(os.path.join(args.work, "untrained-toy-zero123")) if "untrained" in args.runs else None
    from config import load_config

    gscale = load_config(args.config, [f"guidance_model={args.model}", "input=x.png", "save_path=x"] +
                         list(args.overrides)).guidance_scale
    results = {}
    jobs = [(s, run, r) for s in args.seeds for run in args.runs for r in range(args.repeats)]
    bar = progress(jobs, False, "bench_toy")
    examples = {}
    t0 = time.perf_counter()
    for s, run, r in bar:
        if s not in examples:
            examples[s] = toy_objects.write_example(s, os.path.join(args.work, "inputs"))
            results[str(s)] = {run_: [] for run_ in args.runs}
            results[str(s)]["novel_views"] = novel_views(args.model, s, examples[s], gscale)
        m = one_run(run, s, r, examples[s], args.model, untrained, args.work, args.config, args.overrides,
                    args.reuse)
        results[str(s)][run].append(m)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(seed=s, run=run, fscore=f"{m['fscore']:.3f}", iou_back=f"{m['iou_back']:.3f}")
    for s in args.seeds:
        results[str(s)]["wins"] = wins(results[str(s)])
    results["summary"] = summarise(results)
    results["summary"]["seconds"] = round(time.perf_counter() - t0, 1)
    results["summary"]["config"] = os.path.relpath(args.config, ROOT)
    results["summary"]["overrides"] = list(args.overrides)
    print(table(results))
    if args.json:
        from io_utils import save_json

        save_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from cli import guarded

    sys.exit(guarded(main))
