"""Benchmark the Gaussians-to-textured-mesh export on this machine.

    python benchmarks/bench_mesh.py [--json out.json]

Times the density query (128^3 and 256^3 grids, 10k and 50k Gaussians), marching cubes,
cleanup + decimation, xatlas unwrap, back-projection and one 512x512 mesh-render forward+backward,
and the whole export with the defaults of configs/image.yaml. Scene: Gaussians on a sphere shell
of radius 0.5 (an analytic shape with a known surface). Prints JSON lines and a table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


import torch  # noqa: E402

from cameras import Camera  # noqa: E402
from config import load_config  # noqa: E402
from gaussians import sphere_of_gaussians  # noqa: E402
from gs_renderer import render  # noqa: E402
from mesh_renderer import render_mesh  # noqa: E402
from mesh_utils import clean_mesh, decimate, density_grid, gaussians_to_mesh, marching_cubes, unwrap_uv  # noqa: E402
from benchmarks import report  # noqa: E402
from outputs import machine_info  # noqa: E402


def timed(fn, reps=1):
    ts, out = [], None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2], out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=os.path.join(os.path.dirname(__file__), "..", "configs", "image.yaml"))
    ap.add_argument("--json")
    args = ap.parse_args()
    cfg = load_config(args.config)
    rows = []

    def rec(stage, seconds, **kw):
        r = {"stage": stage, "seconds": round(seconds, 3), **kw}
        rows.append(r)
        print(json.dumps(r), flush=True)

    for n in (10000, 50000):
        g = sphere_of_gaussians(n, radius=0.5, scale=0.02 if n == 10000 else 0.012)
        for res in (128, 256):
            t, (grid, c, h) = timed(lambda: density_grid(g, res, res // 8))
            rec("density_query", t, gaussians=n, resolution=res)
    g = sphere_of_gaussians(20000, radius=0.5, scale=0.015)
    t, (grid, c, h) = timed(lambda: density_grid(g, 128, 16))
    rec("density_query", t, gaussians=20000, resolution=128)
    t, (v, f) = timed(lambda: marching_cubes(grid, c, h, cfg.density_thresh))
    rec("marching_cubes", t, faces=len(f))
    t, (v, f) = timed(lambda: decimate(*clean_mesh(v, f), cfg.decimate_target))
    rec("cleanup_decimate", t, faces=len(f))
    t, (v, f, uv) = timed(lambda: unwrap_uv(v, f, cfg.texture_size))
    rec("uv_unwrap", t, faces=len(f))

    def render_fn(cam):
        with torch.no_grad():
            o = render(g, cam)
        return o["image"], o["alpha"]

    t, (mesh, times, stats) = timed(lambda: gaussians_to_mesh(g, cfg, render_fn, log=lambda *a: None))
    for k, s in times.items():
        rec(f"export/{k}", s)
    rec("export_total", t, **stats)
    tex = mesh.albedo.clone().requires_grad_(True)
    off = torch.zeros_like(mesh.v, requires_grad=True)
    cam = Camera.orbit(-10, 30, cfg.radius, cfg.fovy, 512)

    def fb():
        out = render_mesh(mesh, cam, backend="torch", albedo=tex, v_offsets=off)
        out["image"].mean().backward()

    timed(fb)
    t, _ = timed(fb, reps=5)
    rec("mesh_render_fwd_bwd_512", t, faces=int(mesh.f.shape[0]))
    report.publish(args.json, {"machine": machine_info(), "results": rows}, report.mesh_table)


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
