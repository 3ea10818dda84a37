"""Splat formats side by side: size, write and read time, and what each loses, on one set of Gaussians.

    python main.py --config configs/recon.yaml input=data/spot/spot_triangulated.obj save_path=spot
    python benchmarks/bench_splat_formats.py logs/spot_model.ply --json bench_results/splat_formats_cpu.json

For each format GaussianModel writes (.ply, .compressed.ply, .spz, .sog, .glb, .splat) the input is
written and read back; reported: file size (bytes per Gaussian), write and read seconds, the
largest position error (as a fraction of the scene's extent), and the renders of the round trip
against the input's at ``--views`` orbit views (PSNR, on black, the Gaussian renderer at
``--resolution``): what the quantisation costs where it shows. With splat-transform installed
(tools/node_modules, as .ci/run installs it) its own file sizes for the same input are listed too.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import report  # noqa: E402
from outputs import machine_info  # noqa: E402

FORMATS = (".ply", ".compressed.ply", ".spz", ".sog", ".glb", ".splat")
SPLAT_TRANSFORM = os.path.join(ROOT, "tools", "node_modules", ".bin", "splat-transform")


@torch.no_grad()
def renders(model, cams) -> list:
    from gs_renderer import render

    return [render(model, c, (0.0, 0.0, 0.0), "torch")["image"].clamp(0, 1) for c in cams]


def main(argv=None):
    from cli import COUNT_ARG, NONNEG_INT_ARG

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ply", help="the Gaussians to measure with (any readable splat file)")
    ap.add_argument("--views", type=COUNT_ARG, default=8)
    ap.add_argument("--resolution", type=COUNT_ARG, default=256)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--threads", type=NONNEG_INT_ARG, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    from io_utils import require_file

    require_file(args.ply, "splat file")
    if args.threads:
        torch.set_num_threads(args.threads)
    from metrics import psnr
    from gaussians import GaussianModel
    from posed_views import orbit_cameras

    src = GaussianModel.load(args.ply)
    src.check()
    n = len(src)
    means = src.means.detach()
    lo, hi = means.min(0).values, means.max(0).values
    extent = float((hi - lo).max())
    centre = ((lo + hi) / 2).numpy()
    cams = orbit_cameras(args.views, args.resolution, 2.5 * extent, 40.0)
    for c in cams:  # orbit the scene's centre
        c.c2w = c.c2w.copy()
        c.c2w[:3, 3] += centre
    ref = renders(src, cams)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for ext in FORMATS:
            path = os.path.join(tmp, "g" + ext)
            t0 = time.perf_counter()
            src.save(path)
            t1 = time.perf_counter()
            back = GaussianModel.load(path)
            t2 = time.perf_counter()
            d = torch.cdist(back.means.detach().double(), means.double()).min(1).values  # writers may reorder
            got = renders(back, cams)
            rows[ext] = {"bytes": os.path.getsize(path), "bytes_per_gaussian": round(os.path.getsize(path) / n, 2),
                         "write_s": round(t1 - t0, 3), "read_s": round(t2 - t1, 3),
                         "max_position_error": float(d.max()) / extent, "sh_degree": back.sh_degree,
                         "psnr": float(np.mean([psnr(a, b) for a, b in zip(got, ref)]))}
            st = None
            if os.path.isfile(SPLAT_TRANSFORM) and ext not in (".ply", ".splat"):
                out = os.path.join(tmp, "st" + ext)
                r = subprocess.run([SPLAT_TRANSFORM, "-w", "-g", "cpu", args.ply, out], capture_output=True, text=True,
                                   timeout=600)
                st = os.path.getsize(out) if r.returncode == 0 and os.path.isfile(out) else None
            rows[ext]["splat_transform_bytes"] = st
            print(f"{ext}: {rows[ext]}", file=sys.stderr)
    results = {"input": args.ply, "gaussians": n, "sh_degree": src.sh_degree, "extent": extent, "formats": rows,
               "settings": {"views": args.views, "resolution": args.resolution, "torch_threads": torch.get_num_threads()}}
    print(f"{n} Gaussians, SH degree {src.sh_degree}, extent {extent:.3f}\n")
    print(report.splat_formats_table(results))
    if args.json:
        from io_utils import save_json

        save_json(args.json, {**results, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
