"""Does the generative loop turn one image into the right 3D object? Measured with the toy prior
on objects it never saw, and against a perfect prior.

    python scripts/bench_toy.py --seeds 100000 100001 100002 100003 100004 100005 100006 100007 \
        --runs oracle trained untrained no_prior --stage2 --repeats 3 --json bench_results/toy.json

For each object seed (any seed from toy_objects.HELDOUT_START on: the object is made on the fly)
the front view (image mode's input camera) is rendered and image-to-3D runs are made from it with
configs/toy.yaml, ``--repeats`` times each (random seeds 0..R-1):

  oracle      the toy Zero123 guidance with a denoiser that knows the object (scripts/toy_oracle.py):
              what a perfect prior gives this loop, the ceiling
  trained     the shipped toy Zero123 (``--model``)
  untrained   the same architecture and layout with random weights (written once to ``--work``)
  no_prior    lambda_zero123=0: the input view's RGB and mask losses only

Each run is stage 1 (Gaussians, then the coarse mesh); with ``--stage2`` stage 2 refines the
texture too. With ``recenter: false`` (configs/toy.yaml) image mode's frame is the object's own
(extent 1, centred, input camera at azimuth 0), so the output is compared to the ground truth as
it is. Per run: Chamfer-L1 and F-score at 1 % of the ground truth's bounding-box diagonal
(eval_recon's, 50k surface samples; ``fscore_5`` at 5 %: at 64 px one pixel is about 2 % of the
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

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import toy_objects  # noqa: E402
from cameras import Camera  # noqa: E402
from mesh_renderer import render_mesh  # noqa: E402

RUNS = ("oracle", "trained", "untrained", "no_prior")
BASELINES = ("untrained", "no_prior")  # what the trained prior must beat (the oracle is the ceiling, not a rival)
IOU_AZIMUTHS = [45.0 * i for i in range(8)]
BACK = (135.0, 180.0, 225.0)
NOVEL_OFFSETS = (90.0, 180.0, 270.0)
METRICS = ("chamfer", "fscore", "fscore_5", "iou", "iou_back", "psnr_back", "psnr", "ssim")
STAGE_METRICS = ("psnr_stage1", "psnr_stage2", "ssim_stage1", "ssim_stage2")
VIEW_RESOLUTION = 128  # renders of the 8 views around


@torch.no_grad()
def view_metrics(pred, gt, resolution=VIEW_RESOLUTION) -> dict:
    """Per azimuth of IOU_AZIMUTHS (elevation 0, on white): mask IoU, PSNR and SSIM of the textured
    mesh ``pred`` against the ground truth ``gt``."""
    from eval_recon import psnr, ssim

    out = {"iou": {}, "psnr": {}, "ssim": {}}
    for az in IOU_AZIMUTHS:
        cam = Camera.orbit(0.0, az, toy_objects.RADIUS, toy_objects.FOVY, resolution)
        a, b = render_mesh(pred, cam, backend="torch"), render_mesh(gt, cam, backend="torch")
        ma, mb = a["alpha"] > 0.5, b["alpha"] > 0.5
        out["iou"][az] = float((ma & mb).sum()) / max(1, int((ma | mb).sum()))
        out["psnr"][az] = psnr(a["image"], b["image"])
        out["ssim"][az] = ssim(a["image"], b["image"])
    return out


def colour_metrics(pred, gt, vm=None) -> dict:
    """PSNR and SSIM over the 8 views around, and PSNR over the 3 back views (colour included);
    ``vm``: view_metrics(pred, gt) where already computed."""
    vm = vm or view_metrics(pred, gt)
    return {"psnr": float(np.mean(list(vm["psnr"].values()))), "ssim": float(np.mean(list(vm["ssim"].values()))),
            "psnr_back": float(np.mean([vm["psnr"][a] for a in BACK]))}


def mesh_metrics(pred, gt, samples=50000) -> dict:
    """Geometry (Chamfer, F-score at 1 % and 5 %), silhouettes (IoU at the 8 views and the 3 back
    views) and colour (PSNR / SSIM at the 8 views, PSNR at the back views) of ``pred`` against ``gt``.
    The geometry is measured against ``gt``'s outer surface (``eval_recon.outer_surface``: a toy
    object's parts overlap, and the faces buried inside another part are no surface to reconstruct)."""
    from eval_recon import chamfer_fscore, outer_surface

    surface = outer_surface(gt)
    cf = chamfer_fscore(pred, surface, samples)
    cf5 = chamfer_fscore(pred, surface, samples, tau_ratio=0.05)
    vm = view_metrics(pred, gt)
    ious = vm["iou"]
    return {"chamfer": cf["chamfer_l1"], "fscore": cf["fscore"], "fscore_5": cf5["fscore"],
            "iou": float(np.mean(list(ious.values()))),
            "iou_back": float(np.mean([ious[a] for a in BACK])), "iou_per_view": [round(v, 4) for v in ious.values()],
            **colour_metrics(pred, gt, vm), "psnr_per_view": [round(v, 2) for v in vm["psnr"].values()]}


def failed_metrics(reason: str) -> dict:
    """A run that produced no surface: the worst score on every metric."""
    return {"chamfer": None, "fscore": 0.0, "fscore_5": 0.0, "iou": 0.0, "iou_back": 0.0, "psnr_back": None,
            "psnr": None, "ssim": None, "error": reason}


def untrained_model(folder: str) -> str:
    """The toy architecture and layout with its random initial weights (train_toy_prior's models)."""
    if os.path.isfile(os.path.join(folder, "model_index.json")):
        return folder
    from train_toy_prior import build_models, export

    vae, unet, clip, proj = build_models(seed=12345)
    export(folder, vae, unet, clip, proj, {"untrained": True, "init_seed": 12345})
    return folder


def check_seeds_and_model(seeds, model: str):
    """Held-out objects only, and a toy model folder: else a one-line ValueError (before any work)."""
    bad = [s for s in seeds if s < toy_objects.HELDOUT_START]
    if bad:
        raise ValueError(f"seeds {bad} are training objects; held-out objects start at {toy_objects.HELDOUT_START}")
    if not os.path.isfile(os.path.join(model, "model_index.json")):
        raise ValueError(f"no toy model at {model} (python scripts/train_toy_prior.py --out {model})")


def run_stages(cfg_path, overrides, stage2=False, build_guidance=None, log=lambda *a: None, stage1=True) -> dict:
    """Stage 1 (and with ``stage2`` stage 2) in this process, as main.py / main2.py run them; with
    ``build_guidance`` (e.g. toy_oracle.oracle_builder) that guidance replaces the configured prior.
    ``stage1=False``: stage 2 only, on the stage-1 outputs already there. Returns the output paths
    (trainer.output_paths)."""
    from config import load_config
    from trainer import Context, Stage1, Stage2, output_paths

    cfg = load_config(cfg_path, overrides)
    if stage1:
        Stage1(cfg, log=log, context=Context(cfg, log, build_guidance)).run()
    if stage2:
        Stage2(cfg, log=log, context=Context(cfg, log, build_guidance)).run()
    return output_paths(cfg)


def remesh(cfg_path, overrides) -> dict:
    """Stage 1's mesh made again from the Gaussians that run saved (``<save_path>_model.ply``) with
    the mesh keys of ``cfg_path`` + ``overrides`` as they are now: scores a change of the mesh
    export on old runs without training again. Returns the output paths (trainer.output_paths)."""
    from config import load_config
    from mesh import mesh_files
    from mesh_from_ply import mesh_gaussians
    from trainer import digests, output_paths, read_run_json, update_run_json

    cfg = load_config(cfg_path, overrides)
    paths = output_paths(cfg)
    mesh, times, stats = mesh_gaussians(paths["ply"], cfg)
    mesh.save(paths["coarse"])
    # run.json: the new mesh's hashes (stage 2 refines only the mesh its stage 1 record names)
    record = {k: v for k, v in (read_run_json(paths["run"]).get("stage1") or {}).items()
              if k not in ("config", "torch_threads")}
    record.update(mesh=stats, files={**record.get("files", {}), **digests(mesh_files(paths["coarse"]))},
                  remeshed={"from": paths["ply"], "mesh_export_stages": times})
    update_run_json(paths["run"], "stage1", cfg, record)
    return paths


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
    from mesh import Mesh
    from mesh_utils import NoSurfaceError

    _, ply = example
    overrides = run_overrides(run, seed, repeat, example, model, untrained, work) + list(extra)
    build = None
    if run == "oracle":
        from toy_oracle import oracle_builder

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


# ------------------------------------------------------------------------ the prior's own views
def _mask(img, thresh=0.9):
    """Foreground of an image on white: any channel below ``thresh``."""
    return (img < thresh).any(0)


@torch.no_grad()
def novel_views(model, seed, example, guidance_scale, steps=50, resolution=64, mirror=False) -> dict:
    """The prior's DDIM samples at azimuth offsets NOVEL_OFFSETS from the input view, against the
    ground truth's renders there, and the input view copied as the baseline. ``mirror`` conditions
    the samples on the azimuths negated (a prior that knows left from right then scores lower)."""
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
    asked = [View(v.camera, 0.0, -v.azimuth, toy_objects.RADIUS) for v in views] if mirror else views
    pred = g.refine(inp.clone(), asked, strength=0.0, steps=steps)  # strength 0: from pure noise

    def scores(x):
        ps = [float(-10 * torch.log10(((a - b) ** 2).mean().clamp_min(1e-10))) for a, b in zip(x, gt)]
        ious = []
        for a, b in zip(x, gt):
            ma, mb = _mask(a), _mask(b)
            ious.append(float((ma & mb).sum()) / max(1, int((ma | mb).sum())))
        return {"psnr": float(np.mean(ps)), "iou": float(np.mean(ious)), "psnr_per_view": [round(p, 2) for p in ps],
                "iou_per_view": [round(i, 3) for i in ious]}
    grid = torch.cat([torch.cat(list(gt), 2), torch.cat(list(pred), 2)], 1)
    grid_path = os.path.join(os.path.dirname(png), f"novel_views_{seed}{'_mirrored' if mirror else ''}.png")
    save_image(grid_path, grid.permute(1, 2, 0).numpy())
    return {"prior": scores(pred), "input_copied": scores(inp), "grid": grid_path}


# ---------------------------------------------------------------------------------- summary
def _mean(rows, metric):
    vals = [x[metric] for x in rows if x.get(metric) is not None]
    return float(np.mean(vals)) if vals else None


def wins(entry) -> dict:
    """Per metric: does the trained prior's mean beat both baselines' means by more than the largest
    standard deviation over the repeats?"""
    out = {}
    runs = [r for r in ("trained",) + BASELINES if entry.get(r)]
    for metric in ("iou_back", "fscore", "fscore_5", "psnr_back"):
        if "trained" not in runs or len(runs) < 2 or not all(x.get(metric) is not None for r in runs for x in entry[r]):
            continue
        means = {r: _mean(entry[r], metric) for r in runs}
        spread = max(float(np.std([x[metric] for x in entry[r]])) for r in runs)
        best_other = max(v for r, v in means.items() if r != "trained")
        out[metric] = {"margin": means["trained"] - best_other, "spread": spread,
                       "win": bool(means["trained"] - best_other > spread)}
    return out


def oracle_checks(entry) -> dict:
    """Does the oracle's mean beat the untrained network's on back-view IoU, F-score@5 % and
    back-view PSNR?"""
    if not entry.get("oracle") or not entry.get("untrained"):
        return {}
    out = {}
    for metric in ("iou_back", "fscore_5", "psnr_back"):
        a, b = _mean(entry["oracle"], metric), _mean(entry["untrained"], metric)
        if a is not None and b is not None:
            out[metric] = {"oracle": a, "untrained": b, "beats": bool(a > b)}
    return out


def stage2_gains(entry) -> dict:
    """Per run: mean PSNR and SSIM change from stage 1 to stage 2 (8 views)."""
    out = {}
    for run in RUNS:
        rows = [x for x in entry.get(run, []) if x.get("psnr_stage2") is not None]
        if rows:
            out[run] = {"psnr": float(np.mean([x["psnr_stage2"] - x["psnr_stage1"] for x in rows])),
                        "ssim": float(np.mean([x["ssim_stage2"] - x["ssim_stage1"] for x in rows]))}
    return out


def score(results: dict, seed: str):
    """The per-object judgements, from its runs."""
    entry = results[seed]
    entry["wins"] = wins(entry)
    entry["oracle_vs_untrained"] = oracle_checks(entry)
    gains = stage2_gains(entry)
    if gains:
        entry["stage2_gain"] = gains


def summarise(results: dict) -> dict:
    seeds = [k for k in results if k != "summary"]
    summary = {}
    for run in RUNS:
        rows = [x for s in seeds for x in results[s].get(run, [])]
        if not rows:
            continue
        summary[run] = {m: _mean(rows, m) for m in METRICS + STAGE_METRICS if any(m in x for x in rows)}
        summary[run]["failed"] = sum("error" in x for x in rows)
    for metric in ("iou_back", "fscore", "fscore_5", "psnr_back"):
        summary[f"wins_{metric}"] = sum(results[s]["wins"].get(metric, {}).get("win", False) for s in seeds)
    summary["wins_both"] = sum(all(results[s]["wins"].get(m, {}).get("win", False) for m in ("iou_back", "fscore"))
                               for s in seeds)
    checks = [results[s]["oracle_vs_untrained"] for s in seeds if results[s].get("oracle_vs_untrained")]
    if checks:
        summary["oracle_beats_untrained"] = {m: sum(c[m]["beats"] for c in checks if m in c)
                                             for m in ("iou_back", "fscore_5", "psnr_back")}
        summary["oracle_beats_untrained_all"] = sum(all(c[m]["beats"] for m in c) for c in checks)
    gains = [results[s]["stage2_gain"] for s in seeds if results[s].get("stage2_gain")]
    if gains:
        summary["stage2_improves"] = {run: sum(g[run]["psnr"] > 0 and g[run]["ssim"] > 0 for g in gains if run in g)
                                      for run in RUNS if any(run in g for g in gains)}
    summary["objects"] = len(seeds)
    nv = [results[s]["novel_views"] for s in seeds if "novel_views" in results[s]]
    if nv:
        summary["novel_views"] = {k: {m: float(np.mean([x[k][m] for x in nv])) for m in ("psnr", "iou")}
                                  for k in ("prior", "input_copied")}
    return summary


def table(results) -> str:
    stage2 = any("psnr_stage2" in x for s in results if s != "summary" for r in RUNS for x in results[s].get(r, []))
    cols = [("chamfer", "Chamfer-L1"), ("fscore", "F-score@1%"), ("fscore_5", "F-score@5%"), ("iou", "mask IoU (8)"),
            ("iou_back", "IoU back (3)"), ("psnr_back", "PSNR back (3)")]
    cols += [("psnr_stage1", "PSNR st.1 (8)"), ("psnr_stage2", "PSNR st.2"), ("ssim_stage1", "SSIM st.1"),
             ("ssim_stage2", "SSIM st.2")] if stage2 else [("psnr", "PSNR (8)"), ("ssim", "SSIM (8)")]
    lines = ["| object | run | " + " | ".join(c for _, c in cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for s in [k for k in results if k != "summary"]:
        for run in RUNS:
            rows = results[s].get(run)
            if not rows:
                continue

            def ms(m):
                vals = [x[m] for x in rows if x.get(m) is not None]
                return f"{np.mean(vals):.4f} ± {np.std(vals):.4f}" if vals else "failed"
            lines.append(f"| {s} | {run} | " + " | ".join(ms(m) for m, _ in cols) + " |")
    sm = results["summary"]
    lines += ["", "| run | " + " | ".join(c for _, c in cols) + " | failed runs |", "|---" * (len(cols) + 2) + "|"]
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    for run in RUNS:
        if run in sm:
            lines.append(f"| {run} | " + " | ".join(fmt(sm[run].get(m)) for m, _ in cols) + f" | {sm[run]['failed']} |")
    lines.append(f"\ntrained beats both baselines by more than the spread: iou_back on {sm['wins_iou_back']}, "
                 f"fscore on {sm['wins_fscore']}, both on {sm['wins_both']} of {sm['objects']} objects "
                 f"(fscore_5: {sm['wins_fscore_5']}, psnr_back: {sm['wins_psnr_back']})")
    if "oracle_beats_untrained" in sm:
        o = sm["oracle_beats_untrained"]
        lines.append(f"oracle beats the untrained network: iou_back on {o['iou_back']}, fscore_5 on {o['fscore_5']}, "
                     f"psnr_back on {o['psnr_back']}, all three on {sm['oracle_beats_untrained_all']} of "
                     f"{sm['objects']} objects")
    if "stage2_improves" in sm:
        lines.append("stage 2 raises both PSNR and SSIM over stage 1 (mean over repeats): " + ", ".join(
            f"{run} on {n} of {sm['objects']}" for run, n in sm["stage2_improves"].items()))
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
            if "trained" in args.runs:
                results[str(s)]["novel_views"] = novel_views(args.model, s, examples[s], gscale)
        m = one_run(run, s, r, examples[s], args.model, untrained, args.work, args.config, args.overrides,
                    args.reuse, args.stage2, remesh_only=args.remesh)
        results[str(s)][run].append(m)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(seed=s, run=run, fscore=f"{m['fscore']:.3f}", iou_back=f"{m['iou_back']:.3f}")
    for s in args.seeds:
        score(results, str(s))
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
