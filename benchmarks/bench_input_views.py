"""Image-to-3D from several pictures of one object: does each added view help, and what does the
prior add to the views? Measured on held-out toy objects (and on real meshes without a prior).

    python benchmarks/bench_input_views.py --seeds 100000 100001 100002 100003 100004 100005 100006 100007 \
        --repeats 3 --json bench_results/input_views_cpu.json
    python benchmarks/bench_input_views.py --meshes ../shared/assets/spot/spot_triangulated.obj ... --json ...

Toy objects (``--seeds``, held out): each object is rendered at the view sets of ``--view-sets``
(default ``0``, ``0,180``, ``0,90,180``: azimuths in degrees in the orbit convention of
``input_azimuths``, elevation 0, 256 px RGBA as ``toy/objects.py write_view`` writes them) and stage 1
of configs/toy.yaml runs from each set with ``input=[...] input_azimuths=[...]``, ``--repeats``
times (seeds 0..R-1), for each run of ``--runs``:

  oracle     the toy Zero123 with a denoiser that knows the object (toy/oracle.py): each
             sampled view conditioned on its nearest input view, as the real prior is
  trained    the shipped toy Zero123 (``--model``)
  no_prior   lambda_zero123=0: the input views' RGB and mask losses only ("views only")

Per run (the coarse mesh against the ground truth, toy.runs.mesh_metrics): ``chamfer``, ``fscore_5``
(F-score at 5 % of the diagonal), ``iou`` (mask IoU over 8 views around at elevation 0), and at the
views no input faces, ``iou_unseen`` and ``psnr_unseen``: the azimuths of those 8 that are at least
90 degrees from every input view of every view set (with the default sets: 225, 270 and 315 are
not all that far; only 270 is), so that every view set is scored at the same views; ``--unseen``
names them where a bench runs fewer sets than it is compared with (``--view-sets 0,180 --unseen
270`` is scored as the default sets are). Each run also keeps the IoU and PSNR of all 8 views, and
``fscore_1`` (F-score at 1 % of the diagonal): reported beside the five, not counted in "beats on
every metric" (the issue's five); F-score@5 % reaches 1.000 with the oracle, where 1 % still parts
the runs.

Real meshes (``--meshes``, no prior): the mesh, normalised as recon mode normalises it, rendered at
``--mesh-views`` azimuths (elevation 0, recon's camera) as RGBA images; image mode runs from them
with configs/recon.yaml's fitting settings (``mode=image lambda_zero123=0 recenter=false``: views
only), beside recon mode's own 32 views with the same config; Chamfer and F-score@5 % against the
mesh, in recon's normalised frame.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from outputs import machine_info  # noqa: E402
from io_utils import load_image, save_json  # noqa: E402
from mesh import Mesh  # noqa: E402
from mesh_utils import NoSurfaceError  # noqa: E402
from toy import objects as toy_objects  # noqa: E402
from toy.oracle import oracle_builder  # noqa: E402
from toy.pictures import draw, render_azimuths  # noqa: E402
from toy.runs import IOU_AZIMUTHS, check_seeds_and_model, mesh_metrics, remesh, run_stages, view_metrics  # noqa: E402
from toy.view_sets import RUNS, VIEW_SETS, parse_view_set, summarise, table, unseen_azimuths  # noqa: E402

def overrides_for(run, azimuths, paths, seed, repeat, model, work) -> list:
    name = f"{seed}_{len(azimuths)}v_{run}_{repeat}"
    out = [f"input=[{','.join(paths)}]", f"input_azimuths=[{','.join(f'{a:g}' for a in azimuths)}]",
           f"save_path={name}", f"outdir={work}", f"seed={repeat}", "quiet=true", f"guidance_model={model}"]
    if run == "no_prior":
        out.append("lambda_zero123=0")
    return out


def finished(run_json: str) -> bool:
    """A stage-1 run of an earlier bench in --work that finished (its mesh written)."""
    try:
        with open(run_json) as fh:
            return json.load(fh)["stage1"]["status"] == "finished"
    except (OSError, ValueError, KeyError, TypeError):
        return False


def toy_run(run, seed, azimuths, repeat, args, unseen, extra=()) -> dict:
    folder = os.path.join(args.work, "inputs")
    _, ply = toy_objects.write_example(seed, folder)
    paths = [toy_objects.write_view(seed, folder, a) for a in azimuths]
    overrides = overrides_for(run, azimuths, paths, seed, repeat, args.model, args.work) + list(extra)
    build = None
    if run == "oracle":
        build = oracle_builder(seed)
    t0 = time.perf_counter()
    name = f"{seed}_{len(azimuths)}v_{run}_{repeat}"
    out = {"coarse": os.path.join(args.work, name + "_mesh.obj"), "run": os.path.join(args.work, name + "_run.json")}
    try:
        if args.remesh:  # the saved Gaussians meshed again with the mesh keys as they are now
            out = remesh(os.path.join(ROOT, "configs", "toy.yaml"), overrides)
        elif not (args.reuse and finished(out["run"])):
            out = run_stages(os.path.join(ROOT, "configs", "toy.yaml"), overrides, False, build)
    except NoSurfaceError as e:
        return {"chamfer": None, "fscore_5": 0.0, "fscore_1": 0.0, "iou": 0.0, "iou_unseen": 0.0, "psnr_unseen": None,
                "error": str(e)}
    pred, gt = Mesh.load(out["coarse"]), Mesh.load(ply)
    m = mesh_metrics(pred, gt)
    vm = view_metrics(pred, gt)
    return {"chamfer": m["chamfer"], "fscore_5": m["fscore_5"], "fscore_1": m["fscore"], "iou": m["iou"],
            "iou_unseen": float(np.mean([vm["iou"][a] for a in unseen])),
            "psnr_unseen": float(np.mean([vm["psnr"][a] for a in unseen])),
            # every one of the 8 views, so other unseen sets can be read off later
            "iou_views": {f"{a:g}": float(vm["iou"][a]) for a in IOU_AZIMUTHS},
            "psnr_views": {f"{a:g}": float(vm["psnr"][a]) for a in IOU_AZIMUTHS},
            "seconds": round(time.perf_counter() - t0, 1)}


def mesh_runs(args) -> dict:
    """Real meshes without a prior: image mode from --mesh-views renders against recon's 32 views."""
    from cameras import Camera
    from config import load_config
    from io_utils import save_image
    from mesh_renderer import render_mesh
    from metrics import chamfer_fscore
    from posed_views import normalise_mesh

    out = {}
    recon_cfg = os.path.join(ROOT, "configs", "recon.yaml")
    for path in args.meshes:
        name = os.path.splitext(os.path.basename(path))[0]
        cfg = load_config(recon_cfg, [f"input={path}", "save_path=x"])
        gt = Mesh.load(path)
        center, scale = normalise_mesh(gt, cfg.recon_extent)  # recon's normalised frame
        folder = os.path.join(args.work, "meshes", name)
        os.makedirs(folder, exist_ok=True)
        pngs = []
        for a in args.mesh_views:  # the views a user would photograph, rendered as recon renders its 32
            o = render_mesh(gt, Camera.orbit(0.0, a, cfg.radius, cfg.fovy, 256), bg_color=(0, 0, 0), backend="torch")
            rgba = np.concatenate([o["image"].permute(1, 2, 0).numpy(), o["alpha"].permute(1, 2, 0).numpy()], -1)
            pngs.append(os.path.join(folder, f"az{a:g}_rgba.png"))
            save_image(pngs[-1], rgba)
        common = [f"outdir={folder}", "quiet=true"]
        t0 = time.perf_counter()
        # the same config (recon's fitting settings, tuned for MSE to views), image mode from the few views
        image = run_stages(recon_cfg, [f"input=[{','.join(pngs)}]", "mode=image", "lambda_zero123=0", "lambda_sd=0",
                                       f"input_azimuths=[{','.join(f'{a:g}' for a in args.mesh_views)}]",
                                       "recenter=false", "resolution_schedule=[64]", "resolution_milestones=[]",
                                       "save_path=views", *common])
        t1 = time.perf_counter()
        recon = run_stages(recon_cfg, [f"input={path}", "save_path=recon", *common])
        t2 = time.perf_counter()
        row = {}
        for key, res, seconds in (("views_no_prior", image, t1 - t0), ("recon_32_views", recon, t2 - t1)):
            pred = Mesh.load(res["coarse"])
            if key == "recon_32_views":  # recon writes in the input's own frame
                pred.v = (pred.v - torch.as_tensor(center, dtype=pred.v.dtype)) * scale
            cf = chamfer_fscore(pred, gt, 50000, tau_ratio=0.05)
            row[key] = {"chamfer": cf["chamfer_l1"], "fscore_5": cf["fscore"], "seconds": round(seconds, 1)}
        out[name] = row
        print(f"{name}: {row}", file=sys.stderr)
    return out


def picture(results, seed: int, args, path: str, size: int = 96):
    """A grid of one object's stage-1 meshes (every run and view set of the bench, seed 0) at
    azimuths 0, 90, 180, 270, with its input views and the ground truth."""
    azimuths = [0.0, 90.0, 180.0, 270.0]
    rows = []
    for run in results["settings"]["runs"]:
        for vs, azs in zip(results["settings"]["view_sets"], args.view_sets):
            mesh = os.path.join(args.work, f"{seed}_{len(azs)}v_{run}_0_mesh.obj")
            if os.path.isfile(mesh):
                label = f"{run.replace('_', ' ')},\n{len(azs)} view{'s' if len(azs) > 1 else ''} ({vs})"
                rows.append((label, render_azimuths(Mesh.load(mesh), azimuths, size)))
    rows.append(("ground truth", render_azimuths(toy_objects.make_object(seed), azimuths, size)))
    largest = max(args.view_sets, key=len)
    inputs = [load_image(toy_objects.write_view(seed, os.path.join(args.work, "inputs"), a)) for a in largest]
    draw(rows, inputs, azimuths, size, path)


def main(argv=None):
    from cli import COUNT_ARG, NONNEG_INT_ARG

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="*", default=[100000 + i for i in range(8)], help="held-out toy objects")
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    ap.add_argument("--view-sets", nargs="+", type=parse_view_set, default=[parse_view_set(v) for v in VIEW_SETS],
                    help="input azimuths per configuration, e.g. 0 0,180 0,90,180")
    ap.add_argument("--repeats", type=COUNT_ARG, default=3)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "toy-zero123"))
    ap.add_argument("--meshes", nargs="*", default=[], help="real meshes: views without a prior against recon")
    ap.add_argument("--mesh-views", type=float, nargs="+", default=[0.0, 90.0, 180.0])
    ap.add_argument("--work", default=os.path.join(ROOT, "logs", "bench_input_views"))
    ap.add_argument("--unseen", type=float, nargs="+",
                    help="azimuths scored as unseen (default: those of the 8 around at least 90 degrees from every "
                    "input of every view set; --unseen 270 scores a set run alone as the default sets are scored)")
    ap.add_argument("--reuse", action="store_true",
                    help="score the finished runs already in --work instead of running them again (a resumed bench)")
    ap.add_argument("--remesh", action="store_true",
                    help="runs already in --work: mesh each run's saved Gaussians again with the mesh keys as they "
                    "are now (no training) and score")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--picture", nargs=2, metavar=("SEED", "PNG"),
                    help="afterwards draw this object's meshes (seed 0 of every run and view set) into PNG")
    ap.add_argument("--threads", type=NONNEG_INT_ARG, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("overrides", nargs="*", help="config overrides for every toy run (key=value, e.g. ref_size=128)")
    args = ap.parse_intermixed_args(argv)
    check_seeds_and_model(args.seeds, args.model)
    from io_utils import require_file

    for m in args.meshes:
        require_file(m, "mesh")
    if args.threads:
        torch.set_num_threads(args.threads)
    from guidance.loading import quiet_libraries

    quiet_libraries()
    os.makedirs(args.work, exist_ok=True)
    sets = [",".join(f"{a:g}" for a in vs) for vs in args.view_sets]
    unseen = unseen_azimuths(args.view_sets)
    if not unseen:
        raise ValueError(f"no azimuth of {IOU_AZIMUTHS} is 90 degrees from every input view of {sets}")
    if args.unseen:
        wrong = [a for a in args.unseen if a not in unseen]
        if wrong:
            raise ValueError(f"--unseen {' '.join(f'{a:g}' for a in wrong)}: not among the azimuths at least 90 degrees "
                             f"from every input view of {sets} ({', '.join(f'{a:g}' for a in unseen)})")
        unseen = list(args.unseen)
    results = {"settings": {"runs": args.runs, "view_sets": sets, "repeats": args.repeats, "unseen_azimuths": unseen,
                            "overrides": list(args.overrides),
                            "model": args.model, "torch_threads": torch.get_num_threads(), "machine": machine_info()}}
    for seed in args.seeds:
        entry = results[str(seed)] = {run: {} for run in args.runs}
        for run in args.runs:
            for vs, azimuths in zip(sets, args.view_sets):
                rows = entry[run][vs] = []
                for r in range(args.repeats):
                    rows.append(toy_run(run, seed, azimuths, r, args, unseen, args.overrides))
                    print(f"{seed} {run} [{vs}] repeat {r}: " + ", ".join(
                        f"{k} {v:.3f}" for k, v in rows[-1].items() if isinstance(v, float)), file=sys.stderr)
        if args.json:
            save_json(args.json, results)  # partial results survive an interruption
    if args.seeds:
        results["summary"] = summarise(results, args.runs, sets)
        print(table(results["summary"], args.runs, sets))
        for k, v in results["summary"].items():
            if "/" not in k:
                print(f"{k}: {v}")
    if args.picture:
        picture(results, int(args.picture[0]), args, args.picture[1])
    if args.meshes:
        results["meshes"] = mesh_runs(args)
    if args.json:
        save_json(args.json, results)
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
