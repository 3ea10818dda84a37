"""Benchmark the Gaussian rasterizer backends: forward and forward+backward time, peak memory.

    python benchmarks/bench_render.py                      # torch backend, default grid
    python benchmarks/bench_render.py --backends torch gsplat --sizes 256 512 --counts 10000

Scene: ``num`` Gaussians initialised as in training (uniform in a ball of radius 0.5, scales
from 3-NN distances) with opacity ``--opacity``, seen from distance 2 with fovy 49.1. Each case
runs in a fresh process so the peak resident memory (CPU) is the case's own. Prints one JSON
object per case and a table at the end.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import report  # noqa: E402
from outputs import machine_info  # noqa: E402



class PeakRSS:
    """Peak resident memory above the level at start, sampled from /proc every 5 ms."""

    def __init__(self):
        import threading

        self.page = os.sysconf("SC_PAGE_SIZE")
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _rss(self):
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.005)

    def stop_mib(self):
        self._stop.set()
        self._t.join()
        return (self.peak - self.base) / 2 ** 20


def run_case(backend, size, num, opacity, reps, device, queue):
    import torch

    from cameras import Camera
    from gaussians import GaussianModel, inverse_sigmoid
    from gs_renderer import render

    g = GaussianModel(0, device=device).init_random_blob(num, seed=0)
    with torch.no_grad():
        g.params["opacities"].fill_(float(inverse_sigmoid(torch.tensor(opacity))))
    cam = Camera.orbit(0, 0, 2.0, 49.1, size)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    import gc

    gc.collect()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    tracker = PeakRSS() if device == "cpu" else None

    def once(backward):
        sync()
        t = time.perf_counter()
        out = render(g, cam, backend=backend)
        if backward:
            out["image"].mean().backward()
        sync()
        return time.perf_counter() - t

    once(True)  # warm-up
    fwd = []
    with torch.no_grad():
        for _ in range(reps):
            fwd.append(once(False))
    fb = [once(True) for _ in range(reps)]
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        peak = tracker.stop_mib()
    queue.put({"backend": backend, "device": device, "size": size, "gaussians": num, "opacity": opacity,
               "fwd_median_s": statistics.median(fwd), "fwd_bwd_median_s": statistics.median(fb),
               "peak_mem_mib": round(peak, 1), "threads": torch.get_num_threads()})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", nargs="+", default=["torch"], help="torch, gsplat, inria")
    ap.add_argument("--sizes", nargs="*", type=int, default=[128, 256, 512])
    ap.add_argument("--counts", nargs="*", type=int, default=[1000, 5000, 20000])
    ap.add_argument("--extra", nargs="*", default=["256x10000"], help="extra SIZExCOUNT cases (targets)")
    ap.add_argument("--opacity", type=float, default=0.5, help="opacity of every Gaussian")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto")
    ap.add_argument("--json", help="also write all results to this file")
    args = ap.parse_args()

    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    cases = [(s, n) for s in args.sizes for n in args.counts]
    cases += [tuple(int(v) for v in e.split("x")) for e in args.extra]
    ctx = mp.get_context("spawn")
    results = []
    for backend in args.backends:
        for size, num in cases:
            q = ctx.Queue()
            p = ctx.Process(target=run_case, args=(backend, size, num, args.opacity, args.reps, device, q))
            p.start()
            p.join()
            if p.exitcode != 0:
                print(json.dumps({"backend": backend, "size": size, "gaussians": num, "error": p.exitcode}))
                continue
            r = q.get()
            results.append(r)
            print(json.dumps(r), flush=True)
    report.publish(args.json, {"machine": machine_info(), "results": results}, report.render_table)


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
