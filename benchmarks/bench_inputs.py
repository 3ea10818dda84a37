"""Meshes other tools wrote: how each file of a folder loads, and how well reconstruction keeps
the colours of the textured ones.

    python benchmarks/bench_inputs.py [--dir tests/data/meshes] [--recon capsule.obj BoxTextured.glb]
                                   [--json bench_results/inputs_cpu.json] [key=value ...]

For every mesh file: load time, what colour it carries (texture, material/vertex colour, grey
with a warning) or the one-line error. For each ``--recon`` file: both stages in recon mode
(configs/recon.yaml plus the overrides), then metrics.evaluate's held-out PSNR / SSIM / mask IoU, beside
the same ground-truth geometry painted neutral grey and white (what a lost texture scores).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import report  # noqa: E402
from outputs import machine_info  # noqa: E402

import torch  # noqa: E402

from mesh import Mesh, MeshFormatError, NEUTRAL_GREY  # noqa: E402
from posed_views import MESH_EXTENSIONS  # noqa: E402


def load_report(path: str) -> dict:
    t = time.perf_counter()
    try:
        m = Mesh.load(path)
    except (MeshFormatError, FileNotFoundError) as e:
        return {"file": os.path.basename(path), "result": "error", "detail": str(e).split(": ", 1)[-1],
                "seconds": round(time.perf_counter() - t, 3)}
    kinds = ", ".join(getattr(m, "sources", []))
    tex = "" if m.albedo is None else f"texture {m.albedo.shape[1]}x{m.albedo.shape[0]}"
    return {"file": os.path.basename(path), "result": "grey (warning)" if m.warnings else kinds,
            "detail": "; ".join([tex] + m.warnings).strip("; "), "faces": int(m.f.shape[0]),
            "seconds": round(time.perf_counter() - t, 3)}


def recon_report(path: str, outdir: str, overrides: list) -> dict:
    from config import load_config
    from metrics import evaluate
    from trainer import Stage1, Stage2

    name = os.path.splitext(os.path.basename(path))[0]
    cfg = load_config(os.path.join(ROOT, "configs", "recon.yaml"),
                      [f"input={path}", f"save_path={name}", f"outdir={outdir}", "quiet=true", *overrides])
    t = time.perf_counter()
    Stage1(cfg, log=lambda *a: None).run()
    Stage2(cfg, log=lambda *a: None).run()
    secs = time.perf_counter() - t
    row = {"file": os.path.basename(path), "seconds": round(secs, 1)}
    r = evaluate(os.path.join(outdir, f"{name}.{cfg.mesh_format}"), path)
    row.update({k: round(r[k], 4) for k in ("psnr", "ssim", "mask_iou", "fscore")})
    gt = Mesh.load(path)
    for label, value in (("grey", NEUTRAL_GREY), ("white", 1.0)):
        p = os.path.join(outdir, f"{name}_{label}.obj")
        Mesh(gt.v, gt.f, vc=torch.full_like(gt.v, value)).save(p)
        row[f"psnr_{label}"] = round(evaluate(p, path)["psnr"], 2)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=os.path.join(ROOT, "tests", "data", "meshes"))
    ap.add_argument("--recon", nargs="*", default=[], help="files of --dir to reconstruct")
    ap.add_argument("--outdir", default=os.path.join(ROOT, "logs", "bench_inputs"))
    ap.add_argument("--json")
    ap.add_argument("overrides", nargs="*", help="key=value for the reconstructions")
    args = ap.parse_intermixed_args(argv)
    files = sorted(f for f in os.listdir(args.dir) if f.lower().endswith(MESH_EXTENSIONS))
    loads = [load_report(os.path.join(args.dir, f)) for f in files]
    print(report.loads_table({"loads": loads}))
    recons = []
    if args.recon:
        os.makedirs(args.outdir, exist_ok=True)
        for f in args.recon:
            recons.append(recon_report(os.path.join(args.dir, f), args.outdir, args.overrides))
            print(report.recon_table({"recon": recons[-1:]}), flush=True)
    if args.json:
        from io_utils import save_json

        save_json(args.json, {"machine": machine_info(), "loads": loads, "recon": recons,
                              "overrides": args.overrides})
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
