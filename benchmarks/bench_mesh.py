"""Benchmark the Gaussians-to-textured-mesh export on this machine.

    python benchmarks/bench_mesh.py [--meshes logs/toy_mesh.obj ...] [--json out.json]

Times the density query (128^3 and 256^3 grids, 10k and 50k Gaussians), marching cubes, cleanup +
decimation, the UV unwrap with both ``uv_unwrap`` methods on the same mesh (100,000, 50,000 and
25,000 faces), back-projection, the whole export at the defaults of configs/image.yaml with each
method, and one 512x512 mesh-render forward+backward (a stage-2 step's mesh work) on each export.
Scene: Gaussians on a sphere shell of radius 0.5 (an analytic shape with a known surface). Both
methods also unwrap Spot for ``metrics.rebake`` (its renders baked onto the fresh atlas, four
held-out views) and every mesh in ``--meshes`` (vertices welded first, e.g. the quick start's and
the Spot example's stage-1 meshes). Prints JSON lines and the tables.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


import numpy as np  # noqa: E402
import torch  # noqa: E402

from cameras import Camera  # noqa: E402
from config import load_config  # noqa: E402
from gaussians import sphere_of_gaussians  # noqa: E402
from gs_renderer import render  # noqa: E402
from mesh_renderer import render_mesh  # noqa: E402
from mesh import Mesh  # noqa: E402
from mesh_utils import clean_mesh, decimate, density_grid, gaussians_to_mesh, marching_cubes  # noqa: E402
from metrics import rebake  # noqa: E402
from uv_atlas import METHODS, atlas_stats, unwrap_uv  # noqa: E402
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
    ap.add_argument("--meshes", nargs="*", default=[], help="more meshes to unwrap with both methods")
    ap.add_argument("--json")
    args = ap.parse_args()
    for path in args.meshes:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--meshes: {path} not found")
    cfg = load_config(args.config)
    rows, unwraps, rebakes = [], [], []

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

    def unwrap_both(name, v, f):
        for method in METHODS:
            t, (_, f2, uv) = timed(lambda: unwrap_uv(v, f, cfg.texture_size, method=method))
            r = {"mesh": name, "faces": len(f), "method": method, "seconds": round(t, 3),
                 **atlas_stats(f, f2, uv, cfg.texture_size)}
            unwraps.append(r)
            print(json.dumps(r), flush=True)

    for target in (len(f), len(f) // 2, len(f) // 4):
        unwrap_both("sphere shell", *decimate(v, f, target))
    spot = Mesh.load(os.path.join(ROOT, "data", "spot", "spot_triangulated.obj"),
                     os.path.join(ROOT, "data", "spot", "spot_texture.png"))
    for method in METHODS:
        r = rebake(spot, 512, method)
        rebakes.append({"mesh": "Spot (re-baked)", "faces": len(r["reference"].f), "method": method,
                        "seconds": round(r["seconds"], 3), **r["stats"], "psnr": [round(p, 2) for p in r["psnr"]],
                        "coverage": round(r["coverage"], 4)})
        print(json.dumps(rebakes[-1]), flush=True)
    for path in args.meshes:
        import trimesh

        m = Mesh.load(path)
        welded = trimesh.Trimesh(m.v.numpy(), m.f.numpy(), process=True)
        unwrap_both(os.path.basename(path), np.asarray(welded.vertices, np.float32), np.asarray(welded.faces, np.int64))

    def render_fn(cam):
        with torch.no_grad():
            o = render(g, cam)
        return o["image"], o["alpha"]

    exports = {}
    for method in METHODS:
        cfg.uv_unwrap = method
        t, (mesh, times, stats) = timed(lambda: gaussians_to_mesh(g, cfg, render_fn, log=lambda *a: None))
        for k, s in times.items():
            rec(f"export/{k}", s, method=method)
        rec("export_total", t, method=method, **stats)
        exports[method] = mesh
    # a stage-2 step's mesh work on each export, the two timed in turn so that both see the same machine
    cam = Camera.orbit(-10, 30, cfg.radius, cfg.fovy, 512)
    times = {method: [] for method in exports}
    for _ in range(8):
        for method, mesh in exports.items():
            tex = mesh.albedo.clone().requires_grad_(True)
            off = torch.zeros_like(mesh.v, requires_grad=True)

            def fb():
                out = render_mesh(mesh, cam, backend="torch", albedo=tex, v_offsets=off)
                out["image"].mean().backward()
            times[method].append(timed(fb)[0])
    for method, mesh in exports.items():
        rec("mesh_render_fwd_bwd_512", sorted(times[method])[4], method=method, faces=int(mesh.f.shape[0]),
            vertices=int(mesh.v.shape[0]))
    report.publish(args.json, {"machine": machine_info(), "results": rows, "unwraps": unwraps, "rebakes": rebakes},
                   report.mesh_tables)


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
