"""Does the generative loop turn one image into the right 3D object? Measured with the toy prior
on objects it never saw, and against a perfect prior.

    python benchmarks/bench_toy.py --seeds 100000 100001 100002 100003 100004 100005 100006 100007 \
        --runs oracle trained untrained no_prior --stage2 --repeats 3 --json bench_results/toy.json

For each object seed (any seed from toy/objects.py HELDOUT_START on: the object is made on the fly)
the front view (image mode's input camera) is rendered and image-to-3D runs are made from it with
configs/toy.yaml, ``--repeats`` times each (random seeds 0..R-1):

  oracle      the toy Zero123 guidance with a denoiser that knows the object (toy/oracle.py):
              what a perfect prior gives this loop, the ceiling
  trained     the shipped toy Zero123 (``--model``)
  untrained   the same architecture and layout with random weights (written once to ``--work``)
  no_prior    lambda_zero123=0: the input view's RGB and mask losses only

Each run is stage 1 (Gaussians, then the coarse mesh); with ``--stage2`` stage 2 refines the
texture too. With ``recenter: false`` (configs/toy.yaml) image mode's frame is the object's own
(extent 1, centred, input camera at azimuth 0), so the output is compared to the ground truth as
it is. Per run: Chamfer-L1 and F-score at 1 % of the ground truth's bounding-box diagonal
(metrics.chamfer_fscore, 50k surface samples; ``fscore_5`` at 5 %: at 64 px one pixel is about 2 % of the
diagonal, so 1 % is sub-pixel), mask IoU over 8 views around the object (elevation 0, azimuths 0,
45, ..., 315, 128 px, on white) and ``iou_back``, the mean over the 3 that face away from the input
(135, 180, 225); ``psnr`` / ``ssim`` of the textured mesh at the 8 views and ``psnr_back`` at the
3 back views (colour included). Geometry is the coarse mesh's (stage 2 changes only the texture);
colour is the final mesh's: with ``--stage2`` that is stage 2's, and ``psnr_stage1``,
``psnr_stage2``, ``ssim_stage1``, ``ssim_stage2`` (and ``psnr_back_stage1``) give both stages.
``novel_views`` reports the trained prior itself: PSNR and mask IoU of its DDIM samples (50 steps
from noise) at azimuth offsets 90, 180 and 270 against ground-truth renders, beside the input view
copied there.

JSON: {"<seed>": {"<run>": [per repeat {chamfer, fscore, fscore_5, iou, iou_back, psnr, ssim,
psnr_back, ...}], "novel_views": {...}, "wins": {...}, "oracle_vs_untrained": {...},
"stage2_gain": {...}}, "summary": {...}}. A win on a metric: the trained prior's mean beats both
baselines' means by more than the largest standard deviation over the repeats of the three runs.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from outputs import machine_info  # noqa: E402
from config import load_config  # noqa: E402
from guidance.loading import quiet_libraries  # noqa: E402
from io_utils import save_json  # noqa: E402
from mesh import Mesh  # noqa: E402
from mesh_utils import NoSurfaceError  # noqa: E402
from toy import objects as toy_objects  # noqa: E402
from toy.evaluation import novel_views  # noqa: E402
from toy.oracle import oracle_builder  # noqa: E402
from toy.runs import (check_seeds_and_model, colour_metrics, failed_metrics, mesh_metrics, remesh,  # noqa: E402
                      run_stages, untrained_model)
from toy.summary import RUNS, judge, table  # noqa: E402
from trainer import progress  # noqa: E402


def run_overrides(run, seed, repeat, example, model, untrained, work) -> list:
    """The config overrides of one run of ``run`` (the oracle runs with the trained model's VAE)."""
    png, _ = example
    overrides = [f"input={png}", f"save_path={seed}_{run}_{repeat}", f"outdir={work}", f"seed={repeat}",
                 "quiet=true"]
    if run in ("trained", "oracle"):
        overrides.append(f"guidance_model={model}")
    elif run == "untrained":
        overrides.append(f"guidance_model={untrained}")
    else:
        overrides.append("lambda_zero123=0")
    return overrides


def one_run(run, seed, repeat, example, model, untrained, work, cfg_path, extra, reuse=False, stage2=False,
            mirror_azimuth=False, remesh_only=False) -> dict:
    _, ply = example
    overrides = run_overrides(run, seed, repeat, example, model, untrained, work) + list(extra)
    build = None
    if run == "oracle":
        build = oracle_builder(seed, mirror_azimuth)
    t0 = time.perf_counter()
    base = os.path.join(work, f"{seed}_{run}_{repeat}")
    final = base + (".obj" if stage2 else "_mesh.obj")
    try:
        if remesh_only:  # the saved Gaussians meshed again, then stage 2 again on that mesh
            remesh(cfg_path, overrides)
            if stage2:
                run_stages(cfg_path, overrides, True, build, stage1=False)
        elif not (reuse and os.path.isfile(final)):  # stage 1 does not decode: its outputs serve a new decoder
            have_stage1 = reuse and os.path.isfile(base + "_mesh.obj") and os.path.isfile(base + "_run.json")
            run_stages(cfg_path, overrides, stage2, build, stage1=not have_stage1)
    except NoSurfaceError as e:
        return {**failed_metrics(str(e)), "seconds": round(time.perf_counter() - t0, 1)}
    gt = Mesh.load(ply)
    m = mesh_metrics(Mesh.load(base + "_mesh.obj"), gt)  # geometry: stage 2 refines the texture only
    if stage2:
        fine = colour_metrics(Mesh.load(final), gt)
        m.update(psnr_stage1=m["psnr"], ssim_stage1=m["ssim"], psnr_back_stage1=m["psnr_back"],
                 psnr_stage2=fine["psnr"], ssim_stage2=fine["ssim"], psnr=fine["psnr"], ssim=fine["ssim"],
                 psnr_back=fine["psnr_back"])
    m["seconds"] = round(time.perf_counter() - t0, 1)
    return m


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", required=True, help=f"object seeds (>= {toy_objects.HELDOUT_START})")
    ap.add_argument("--repeats", type=int, default=3, help="random seeds per run")
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS,
                    help="oracle: a denoiser that knows the object (the ceiling); trained: --model; untrained: its "
                    "architecture at random initialisation; no_prior: the input view's losses alone")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "toy-zero123"))
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "toy.yaml"))
    ap.add_argument("--work", default=os.path.join(ROOT, "logs", "bench_toy"))
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--reuse", action="store_true",
                    help="score the meshes a previous run left in --work instead of running those runs again")
    ap.add_argument("--remesh", action="store_true",
                    help="runs already in --work: mesh each run's saved Gaussians again with the mesh keys as they "
                    "are now (no training), then stage 2 again with --stage2, and score")
    ap.add_argument("--stage2", action="store_true",
                    help="run stage 2 too and report psnr/ssim of both stages (psnr_stage1, psnr_stage2, ...)")
    ap.add_argument("overrides", nargs="*", help="extra key=value config overrides for every run")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        print("error: --repeats must be at least 1", file=sys.stderr)
        return 2
    check_seeds_and_model(args.seeds, args.model)
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_libraries()
    os.makedirs(args.work, exist_ok=True)
    untrained = untrained_model(os.path.join(args.work, "untrained-toy-zero123")) if "untrained" in args.runs else None
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
            if "trained" in args.runs:
                results[str(s)]["novel_views"] = novel_views(args.model, s, examples[s], gscale)
        m = one_run(run, s, r, examples[s], args.model, untrained, args.work, args.config, args.overrides,
                    args.reuse, args.stage2, remesh_only=args.remesh)
        results[str(s)][run].append(m)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(seed=s, run=run, fscore=f"{m['fscore']:.3f}", iou_back=f"{m['iou_back']:.3f}")
    judge(results)
    results["summary"]["seconds"] = round(time.perf_counter() - t0, 1)
    results["summary"]["config"] = os.path.relpath(args.config, ROOT)
    results["summary"]["overrides"] = list(args.overrides)
    results["summary"]["machine"] = machine_info()
    print(table(results))
    if args.json:
        save_json(args.json, results)
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
