"""What the live view (gui=true) costs training: stage-1 steps per second on the README's Spot
reconstruction without the viewer, with the viewer and nobody watching, and with one headless
Chromium watching (Debian's chromium + chromium-driver, through Selenium).

    python benchmarks/bench_viewer.py [--steps 60] [--json bench_results/viewer_cpu.json] [key=value ...]

Every row starts from the same fresh stage (same seed, same trajectory). On a 2-core machine the
watching browser itself (software WebGL) competes with training for the cores; the row "browser
open on an empty page" measures that share alone.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import report  # noqa: E402
from outputs import machine_info  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser(cores=None):
    """Headless Chromium; with ``cores``, it and every process it starts stay on those cores."""
    mine = os.sched_getaffinity(0)
    if cores:
        os.sched_setaffinity(0, cores)  # the driver and the browser inherit this
    try:
        return _launch()
    finally:
        os.sched_setaffinity(0, mine)


def _launch():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,700",
              "--enable-unsafe-swiftshader", "--use-angle=swiftshader"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)


def steps_per_second(stage, steps: int) -> float:
    for _ in range(3):  # warm-up
        stats = stage.train_step()
        if stage.hook:
            stage.hook(stage, stats)
    t = time.perf_counter()
    for _ in range(steps):
        stats = stage.train_step()
        if stage.hook:
            stage.hook(stage, stats)
    return steps / (time.perf_counter() - t)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--json")
    ap.add_argument("--shared", action="store_true",
                    help="let training and the browser share every core (default: training on core 0 with one "
                         "thread, the browser on the others, as if it ran on the user's own machine)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    from config import load_config
    from trainer import Stage1
    from viewer import LiveView

    out = tempfile.mkdtemp(prefix="bench_viewer")
    cfg = load_config(os.path.join(ROOT, "configs", "recon.yaml"),
                      [f"input={os.path.join(ROOT, 'data', 'spot', 'spot_triangulated.obj')}", "save_path=b",
                       f"outdir={out}", "quiet=true", "iters=100000", "density_start_iter=100000", *args.overrides])
    cpus = sorted(os.sched_getaffinity(0))
    pinned = not args.shared and len(cpus) > 1
    if pinned:
        import torch

        os.sched_setaffinity(0, {cpus[0]})
        torch.set_num_threads(1)
    fresh = lambda: Stage1(cfg, log=lambda *a: None)  # noqa: E731  (every row from the same start)
    rows = {"no viewer": steps_per_second(fresh(), args.steps)}
    port = free_port()
    view = LiveView("127.0.0.1", port, cfg.gui_max_resolution, cfg.gui_render_budget, log=lambda *a: None)
    stage = fresh()
    stage.hook = view
    rows["viewer, nobody watching"] = steps_per_second(stage, args.steps)
    d = browser(set(cpus[1:]) if pinned else None)
    try:
        import viser

        idle_port = free_port()
        idle = viser.ViserServer("127.0.0.1", idle_port, verbose=False)
        d.get(f"http://127.0.0.1:{idle_port}")
        time.sleep(3)
        rows["no viewer, browser open on an empty page"] = steps_per_second(fresh(), args.steps)
        idle.stop()
        stage = fresh()
        stage.hook = view
        d.get(f"http://127.0.0.1:{port}")
        end = time.time() + 60
        while not view.server.get_clients() and time.time() < end:
            time.sleep(0.1)
        view.renders, view.render_seconds = 0, 0.0
        t = time.perf_counter()
        rows["viewer, one browser watching"] = steps_per_second(stage, args.steps)
        wall = time.perf_counter() - t
        renders, render_s = view.renders, view.render_seconds
    finally:
        d.quit()
        view.close()
    rows["no viewer (again)"] = steps_per_second(fresh(), args.steps)
    where = (f"training on core {cpus[0]} (1 thread), the browser on {cpus[1:]}" if pinned
             else f"training and the browser sharing cores {cpus}")
    print(f"stage 1 on Spot, {cfg.ref_size} px views, {cfg.num_pts} Gaussians, {args.steps} steps per row; {where}\n")
    print(report.viewer_table({"rows": rows}))
    print(f"\nwhile watched: {renders} live renders, {render_s:.1f} s of {wall:.1f} s wall ({100 * render_s / wall:.0f} %)")
    if args.json:
        from io_utils import save_json

        save_json(args.json, {"machine": machine_info(), "rows": rows, "renders": renders, "render_seconds": render_s, "wall": wall,
                              "pinned": pinned, "overrides": args.overrides})
    shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
