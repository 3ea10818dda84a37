"""Both stages for many inputs: on this machine, or on a Ray cluster.

    python scripts/batch.py --inputs data --config configs/image.yaml --outdir logs [key=value ...]
    python scripts/batch.py --inputs prompts.txt --config configs/text.yaml --backend ray --gpus-per-job 0.5
    python scripts/batch.py --inputs 'meshes/*.glb' --config configs/recon.yaml --backend ray --address auto

Inputs (``--inputs``, or ``--dir``): a folder (image mode: its ``*_rgba.png``; recon mode: its
meshes and ``transforms.json`` folders), a quoted glob, or a manifest (``.txt`` / ``.csv``): one
input per line (an image or mesh path, relative to the manifest, or a text prompt), then optional
per-line overrides such as ``elevation=-10`` or ``save_path=name``; ``#`` starts a comment; quote a
path with spaces. Every config and override is checked before the first job starts.

Each job runs ``main.py`` then ``main2.py`` in ``<outdir>/.partial/<name>/`` and, when both
succeed, moves its files into ``outdir`` (run.json last): an input whose ``<name>_run.json``
records a finished stage 2 is done, and a rerun skips it; a crash or a kill leaves nothing that
looks done. Backends:
- ``local`` (default; no extra package): ``--jobs`` at a time, or one per GPU of ``--gpus 0,1``.
- ``ray`` (``pip install -r requirements-ray.txt``): one Ray task per input asking for
  ``--cpus-per-job`` / ``--gpus-per-job`` (fractions share a GPU); ``--address auto`` or
  ``ray://host:port`` joins a running cluster (``ray start --head`` on one machine, ``ray start
  --address HEAD:6379`` on the others), without it a local instance starts. The repository and
  ``outdir`` must be at the same path on every node (a shared filesystem).
Both retry a failing job ``--retries`` times (Ray: its own task retries, which also cover a
crashed worker) and stop a job after ``--timeout`` seconds (recorded as ``timeout``, not retried).
A live line reports progress; a table and ``<outdir>/batch_summary.json`` close the run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None):
    from cli import COUNT_ARG, NONNEG_ARG, NONNEG_INT_ARG, POSITIVE_ARG

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", "--dir", dest="inputs", required=True, help="folder, quoted glob, or .txt/.csv manifest")
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "image.yaml"))
    ap.add_argument("--outdir", default="logs")
    ap.add_argument("--backend", choices=("local", "ray"), default="local")
    ap.add_argument("--jobs", type=COUNT_ARG, default=1, help="local: jobs at a time on the default device")
    ap.add_argument("--gpus", default=None, help="local: comma-separated GPU ids, one job per GPU, e.g. 0,1")
    ap.add_argument("--address", default=None, help="ray: auto | ray://host:port | host:port (default: a local instance)")
    ap.add_argument("--cpus-per-job", type=POSITIVE_ARG, default=1.0, help="ray: CPUs each job asks for")
    ap.add_argument("--gpus-per-job", type=NONNEG_ARG, default=0.0, help="ray: GPUs each job asks for (fractions share one)")
    ap.add_argument("--retries", type=NONNEG_INT_ARG, default=1, help="retries of a failing job (Ray: also a crashed worker)")
    ap.add_argument("--timeout", type=NONNEG_ARG, default=0, help="seconds per job, both stages (0: none)")
    ap.add_argument("--mesh_format", default="obj", help="format of the final mesh (obj or glb)")
    ap.add_argument("--quiet", action="store_true", help="no live progress line")
    ap.add_argument("overrides", nargs="*", help="key=value passed to both stages of every job")
    args = ap.parse_intermixed_args(argv)
    import batches
    from cli import error_line, set_error_log

    try:
        # jobs run from the repository root: make the caller's relative paths absolute first
        args.outdir, args.config = os.path.abspath(args.outdir), os.path.abspath(args.config)
        overrides = list(args.overrides) + [f"mesh_format={args.mesh_format}"]
        mode, jobs, todo = batches.prepare(args.inputs, args.config, args.outdir, overrides)
        set_error_log(os.path.join(args.outdir, "batch_error.log"))
    except (ValueError, OSError) as e:
        print(error_line(e), file=sys.stderr)
        return 2
    opts = {"outdir": args.outdir, "config": args.config, "mode": mode, "overrides": overrides,
            "retries": args.retries, "timeout": args.timeout}
    skipped = [batches.skipped_record(j) for j in jobs if j not in todo]
    progress = batches.Progress(len(jobs), len(skipped), args.quiet)
    progress.show()
    t0 = time.time()
    try:
        if args.backend == "ray":
            results = batches.run_ray(todo, opts, progress, args.address, args.cpus_per_job, args.gpus_per_job)
        else:
            workers = [g.strip() for g in args.gpus.split(",")] if args.gpus else [None] * args.jobs
            opts["threads"] = batches.thread_share(min(len(workers), max(1, len(todo))))
            results = batches.run_local(todo, opts, progress, workers)
    except batches.BatchError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    if progress.tty and not args.quiet:
        print()
    rows = sorted(skipped + results, key=lambda r: r["name"])
    wall = time.time() - t0
    summary = batches.summarise(rows, args.config, args.backend, args.outdir, wall, opts.get("threads"))
    path = batches.write_summary(summary)
    print("\n" + batches.table(rows))
    c = summary["counts"]
    print(f"\n{c['ok']} ok, {c['skipped']} skipped, {c['failed']} failed, {c['timeout']} timed out in {wall:.0f} s; {path}")
    return 1 if c["failed"] or c["timeout"] else 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
