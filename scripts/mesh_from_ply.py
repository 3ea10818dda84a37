"""Export a textured mesh from a Gaussian .ply without training: re-mesh at another density
threshold, grid resolution or texture size.

    python scripts/mesh_from_ply.py logs/cat_model.ply --out logs/cat_remesh.obj density_thresh=0.5
    python scripts/mesh_from_ply.py logs/spot_model.ply --config configs/recon.yaml --out x.obj

Takes the mesh-export keys of ``--config`` (default configs/image.yaml) with ``key=value``
overrides. The .ply is meshed in its own coordinates (for a recon run, where the Gaussians live
in the normalised frame, pass ``--run logs/NAME_run.json`` to write the mesh in the input's
coordinates as main.py does).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ply")
    ap.add_argument("--out", required=True, help="output mesh (.obj or .glb)")
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "image.yaml"))
    ap.add_argument("--run", help="a recon run's <name>_run.json: write the mesh in the input's coordinates")
    ap.add_argument("overrides", nargs="*", help="key=value (density_thresh, mc_resolution, texture_size, ...)")
    args = ap.parse_intermixed_args(argv)
    from cli import error_line, set_error_log, user_errors

    set_error_log(os.path.splitext(os.path.abspath(args.out))[0] + "_error.log")
    try:
        from config import load_config

        from mesh_utils import mesh_from_file

        cfg = load_config(args.config, args.overrides)
        mesh, times, stats = mesh_from_file(args.ply, cfg)
        if args.run:
            from trainer import read_run_json

            norm = (read_run_json(args.run).get("stage1") or {}).get("normalisation")
            if not isinstance(norm, dict) or "scale" not in norm or "center" not in norm:
                raise ValueError(f"{args.run}: no stage-1 normalisation recorded (--run takes a recon run's run.json)")
            mesh.v = mesh.v / norm["scale"] + torch.tensor(norm["center"])
        mesh.save(args.out)
    except user_errors() as e:
        print(error_line(e), file=sys.stderr)
        return 2
    print(json.dumps({"mesh": args.out, **stats, "timings": times}))
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
