"""What the Ray backend of scripts/batch.py costs per job, against the local backend, on the same
small batch (copies of one small recon input, tiny settings, so that the overhead shows).

    python benchmarks/bench_batch.py [--jobs 6] [--input tests/data/meshes/ico4uv.obj] [--json out.json]

Rows: local (one job at a time), local with ``--jobs 2`` (each job gets its share of the cores),
Ray with 2 CPUs per job on a private local instance (one at a
time, like local: the difference is Ray's overhead, its start-up included), and Ray with 1 CPU
per job (as many at once as there are CPUs). Each row is the batch's wall time from
batch_summary.json and the mean of the jobs' own stage times.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import report  # noqa: E402
from io_utils import load_json  # noqa: E402
from outputs import machine_info  # noqa: E402
SMALL = ["iters=10", "iters_refine=2", "recon_num_views=4", "ref_size=48", "num_pts=300", "mc_resolution=32",
         "mc_num_blocks=2", "texture_size=64", "bake_resolution=48", "bake_num_azimuth=2", "bake_elevations=[0]",
         "decimate_target=2000", "density_thresh=0.2", "device=cpu", "rasterizer=torch", "mesh_renderer=torch"]


def run(inputs, outdir, extra):
    t = time.perf_counter()
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "batch.py"), "--config",
                        os.path.join(ROOT, "configs", "recon.yaml"), "--inputs", inputs, "--outdir", outdir, "--quiet",
                        *extra, *SMALL], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ))
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"batch failed: {r.stderr[-1000:]}")
    s = load_json(os.path.join(outdir, "batch_summary.json"))
    per_job = [sum(j["seconds"].values()) for j in s["jobs"]]
    return {"wall_s": round(wall, 1), "job_mean_s": round(sum(per_job) / len(per_job), 2),
            "jobs_total_s": round(sum(per_job), 1)}


def copies(path, folder, n):
    """``n`` copies of the mesh ``path`` in ``folder``, with its material library and textures."""
    os.makedirs(folder)
    stem, ext = os.path.splitext(os.path.basename(path))
    for i in range(n):
        shutil.copy(path, os.path.join(folder, f"{stem}_{i}{ext}"))
    here = os.path.dirname(path)
    for f in os.listdir(here):
        if f.startswith(stem) and not f.endswith(ext):
            shutil.copy(os.path.join(here, f), folder)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=6)
    ap.add_argument("--input", default=os.path.join(ROOT, "tests", "data", "meshes", "ico4uv.obj"))
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="bench_batch")
    src, warm = os.path.join(tmp, "in"), os.path.join(tmp, "warm")
    copies(args.input, src, args.jobs)
    copies(args.input, warm, 1)
    run(warm, os.path.join(tmp, "warm_out"), [])  # one job first: file caches, imports
    rows = {}
    for label, extra in (("local, 1 at a time", []),
                         ("local, --jobs 2 (2 at a time)", ["--jobs", "2"]),
                         ("ray, 2 CPUs/job (1 at a time)", ["--backend", "ray", "--cpus-per-job", "2"]),
                         ("ray, 1 CPU/job (2 at a time)", ["--backend", "ray", "--cpus-per-job", "1"])):
        rows[label] = run(src, os.path.join(tmp, label.split(",")[0] + extra[-1] if extra else "local"), extra)
        rows[label]["threads_per_job"] = load_json(os.path.join(
            tmp, label.split(",")[0] + extra[-1] if extra else "local", "batch_summary.json"))["threads_per_job"]
    local = rows["local, 1 at a time"]["wall_s"]
    print(f"{args.jobs} jobs of {os.path.basename(args.input)} (tiny recon settings)\n")
    for label, r in rows.items():
        r["overhead_per_job_s"] = round((r["wall_s"] - local) / args.jobs, 2)
        r["outside_jobs_s"] = round(r["wall_s"] - r["jobs_total_s"], 1) if "1 at a time" in label else None
    print(report.batch_table({"jobs": args.jobs, "rows": rows}))
    if args.json:
        from io_utils import save_json

        save_json(args.json, {"machine": machine_info(), "jobs": args.jobs, "input": args.input, "rows": rows})
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
