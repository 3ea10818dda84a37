"""Image-to-3D runs on toy objects, in this process, and how each is scored against the truth
(the library of the toy benchmarks, ``toy/quickstart_pictures.py`` and the tests).

- ``run_stages``: stage 1 (and 2) as main.py / main2.py run them, optionally with another guidance
  (``toy.oracle.oracle_builder``); ``remesh``: a run's saved Gaussians meshed again;
- ``mesh_metrics``: geometry (Chamfer, F-score at 1 % and 5 % of the diagonal, against the ground
  truth's outer surface), silhouettes (mask IoU at 8 views around, and the 3 that face away from
  the input) and colour (PSNR / SSIM) of a mesh against a toy object;
- ``untrained_model``: the toy prior's architecture at its random initialisation, as a baseline.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from cameras import Camera
from config import load_config
from mesh import mesh_files
from mesh_renderer import render_mesh
from mesh_utils import mesh_from_file
from metrics import chamfer_fscore, mask_iou, outer_surface, psnr, ssim
from toy import objects as toy_objects
from toy.prior import build_models, export
from trainer import Context, Stage1, Stage2, digests, output_paths, read_run_json, update_run_json

IOU_AZIMUTHS = [45.0 * i for i in range(8)]  # the 8 views around (elevation 0) every run is scored at
BACK = (135.0, 180.0, 225.0)  # the 3 of them that face away from the input view
VIEW_RESOLUTION = 128  # renders of the 8 views around


@torch.no_grad()
def view_metrics(pred, gt, resolution=VIEW_RESOLUTION) -> dict:
    """Per azimuth of IOU_AZIMUTHS (elevation 0, on white): mask IoU, PSNR and SSIM of the textured
    mesh ``pred`` against the ground truth ``gt``."""
    out = {"iou": {}, "psnr": {}, "ssim": {}}
    for az in IOU_AZIMUTHS:
        cam = Camera.orbit(0.0, az, toy_objects.RADIUS, toy_objects.FOVY, resolution)
        a, b = render_mesh(pred, cam, backend="torch"), render_mesh(gt, cam, backend="torch")
        out["iou"][az] = mask_iou(a["alpha"] > 0.5, b["alpha"] > 0.5)
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
    The geometry is measured against ``gt``'s outer surface (``metrics.outer_surface``: a toy
    object's parts overlap, and the faces buried inside another part are no surface to reconstruct)."""
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
    """The toy architecture and layout with its random initial weights (toy.prior's models)."""
    if os.path.isfile(os.path.join(folder, "model_index.json")):
        return folder
    vae, unet, clip, proj = build_models(seed=12345)
    export(folder, vae, unet, clip, proj, {"untrained": True, "init_seed": 12345})
    return folder


def check_seeds_and_model(seeds, model: str):
    """Held-out objects only, and a toy model folder: else a one-line ValueError (before any work)."""
    bad = [s for s in seeds if s < toy_objects.HELDOUT_START]
    if bad:
        raise ValueError(f"seeds {bad} are training objects; held-out objects start at {toy_objects.HELDOUT_START}")
    if not os.path.isfile(os.path.join(model, "model_index.json")):
        raise ValueError(f"no toy model at {model} (python toy/train_prior.py --out {model})")


def run_stages(cfg_path, overrides, stage2=False, build_guidance=None, log=lambda *a: None, stage1=True) -> dict:
    """Stage 1 (and with ``stage2`` stage 2) in this process, as main.py / main2.py run them; with
    ``build_guidance`` (e.g. toy.oracle.oracle_builder) that guidance replaces the configured prior.
    ``stage1=False``: stage 2 only, on the stage-1 outputs already there. Returns the output paths
    (trainer.output_paths)."""
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
    cfg = load_config(cfg_path, overrides)
    paths = output_paths(cfg)
    mesh, times, stats = mesh_from_file(paths["ply"], cfg)
    mesh.save(paths["coarse"])
    # run.json: the new mesh's hashes (stage 2 refines only the mesh its stage 1 record names)
    record = {k: v for k, v in (read_run_json(paths["run"]).get("stage1") or {}).items()
              if k not in ("config", "torch_threads")}
    record.update(mesh=stats, files={**record.get("files", {}), **digests(mesh_files(paths["coarse"]))},
                  remeshed={"from": paths["ply"], "mesh_export_stages": times})
    update_run_json(paths["run"], "stage1", cfg, record)
    return paths
