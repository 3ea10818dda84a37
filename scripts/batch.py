"""Run both stages over a folder of *_rgba.png images, one process per image.

    python scripts/batch.py --dir data --config configs/image.yaml --outdir logs [--gpus 0,1] [key=value ...]

Jobs are spread over the listed GPUs (CUDA_VISIBLE_DEVICES, one job per GPU at a time; without
--gpus they run one after another on the default device). An image whose final mesh already
exists is skipped, so a rerun resumes; a failing image is logged (<outdir>/<name>.log) and the
others go on. A summary table closes the run.
"""
from __future__ import annotations

import argparse
import glob
import os
import queue
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def name_of(image):
    return os.path.basename(image).replace("_rgba.png", "")


def final_mesh(outdir, name, fmt):
    return os.path.join(outdir, f"{name}.{fmt}")


def run_one(image, args, overrides, gpu):
    name = name_of(image)
    log_path = os.path.join(args.outdir, f"{name}.log")
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    common = ["--config", args.config, f"input={image}", f"save_path={name}", f"outdir={args.outdir}", "--quiet",
              *overrides]
    t0 = time.time()
    with open(log_path, "w") as log:
        for script in ("main.py", "main2.py"):
            r = subprocess.run([sys.executable, os.path.join(ROOT, script), *common], stdout=log,
                               stderr=subprocess.STDOUT, env=env, cwd=ROOT)
            if r.returncode != 0:
                return name, f"failed in {script}", time.time() - t0, log_path
    return name, "ok", time.time() - t0, log_path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True, help="folder of *_rgba.png images")
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "image.yaml"))
    ap.add_argument("--outdir", default="logs")
    ap.add_argument("--gpus", default=None, help="comma-separated GPU ids, e.g. 0,1")
    ap.add_argument("--mesh_format", default="obj", help="format of the final mesh (obj or glb)")
    ap.add_argument("overrides", nargs="*", help="key=value passed to both stages")
    args = ap.parse_intermixed_args(argv)
    # jobs run from the repository root: make the caller's relative paths absolute first
    args.dir, args.outdir, args.config = (os.path.abspath(p) for p in (args.dir, args.outdir, args.config))
    images = sorted(glob.glob(os.path.join(args.dir, "*_rgba.png")))
    if not images:
        print(f"error: no *_rgba.png images in {args.dir}", file=sys.stderr)
        return 2
    os.makedirs(args.outdir, exist_ok=True)
    overrides = list(args.overrides) + [f"mesh_format={args.mesh_format}"]
    results, todo = [], queue.Queue()
    for img in images:
        name = name_of(img)
        if os.path.isfile(final_mesh(args.outdir, name, args.mesh_format)):
            results.append((name, "skipped (done)", 0.0, ""))
        else:
            todo.put(img)
    gpus = [g.strip() for g in args.gpus.split(",")] if args.gpus else [None]
    lock = threading.Lock()

    def worker(gpu):
        while True:
            try:
                img = todo.get_nowait()
            except queue.Empty:
                return
            res = run_one(img, args, overrides, gpu)
            with lock:
                results.append(res)
                print(f"[{res[1]}] {res[0]} ({res[2]:.0f} s){'' if res[1] == 'ok' else ' see ' + res[3]}", flush=True)

    threads = [threading.Thread(target=worker, args=(g,)) for g in gpus]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("\n| image | status | seconds |\n|---|---|---|")
    for name, status, secs, _ in sorted(results):
        print(f"| {name} | {status} | {secs:.0f} |")
    return 1 if any(r[1].startswith("failed") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
