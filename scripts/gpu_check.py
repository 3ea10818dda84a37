"""Everything to check on the first CUDA machine, in one run.

    python scripts/gpu_check.py [--out gpu_check.json] [--skip-install] [--iters 500 --iters-refine 50]
    python scripts/gpu_check.py --tiny --device cpu      # the same steps, tiny model, on a CPU (smoke run)

1. gsplat: imported, or installed from PyPI (``pip install gsplat``) when missing; the outcome is
   recorded (a machine without network records the failure and goes on).
2. The CUDA parity tests: ``pytest tests/test_renderer.py -k cuda`` (torch vs gsplat / inria
   rasterizer: image, alpha, depth, gradients).
3. The rasterizers side by side: ``benchmarks/bench_render.py`` over every installed backend.
4. The whole image pipeline at the reference's settings (configs/image.yaml: 500 stage-1 steps,
   mesh export, 50 stage-2 steps) with a full-size random-weight Zero123-XL written in the
   published ``ashawkey/zero123-xl-diffusers`` layout and loaded through the real loading path:
   seconds per stage (model load, training, mesh export, refinement) and peak GPU memory.
   Random weights cost what the trained ones do; the result is noise, so only times count.
5. One SDS step and one 10-step refinement of each prior at full size (``benchmarks/bench_guidance.py``:
   Zero123-XL, SD 2.1, MVDream and ImageDream, the last two from single-file checkpoints in the
   published key layout, converted on load), with the peak GPU memory of the run.

Writes one JSON file (``--out``) and prints a table. Target on one H100/H200: both stages < 60 s.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from io_utils import load_json, save_json  # noqa: E402

TINY = ["ref_size=64", "resolution_schedule=[32,64]", "resolution_milestones=[0.5]", "num_pts=500",
        "density_start_iter=2", "densification_interval=4", "mc_resolution=32", "mc_num_blocks=4",
        "texture_size=128", "bake_resolution=64", "bake_num_azimuth=4", "bake_elevations=[0]",
        "decimate_target=3000", "refine_resolution=64", "refine_inference_steps=10", "density_thresh=0.05"]


def sh(cmd, timeout=1800):
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return {"cmd": " ".join(cmd), "rc": r.returncode, "seconds": round(time.perf_counter() - t, 1),
            "tail": (r.stdout + r.stderr)[-3000:]}


def ensure_gsplat(skip: bool) -> dict:
    if importlib.util.find_spec("gsplat") is not None:
        import gsplat

        return {"gsplat": getattr(gsplat, "__version__", "?"), "installed_now": False}
    if skip:
        return {"gsplat": None, "installed_now": False, "note": "--skip-install"}
    r = sh([sys.executable, "-m", "pip", "install", "--quiet", "gsplat"], timeout=900)
    importlib.invalidate_caches()
    ok = r["rc"] == 0 and importlib.util.find_spec("gsplat") is not None
    return {"gsplat": "installed" if ok else None, "installed_now": ok, "pip": r if not ok else None}


def pipeline(device: str, tiny: bool, iters: int, iters_refine: int, workdir: str) -> dict:
    """Both stages at image.yaml's settings on a random-weight Zero123 folder in the hub layout."""
    import torch

    from config import load_config
    from guidance.hub_layouts import build_zero123
    from trainer import Stage1, Stage2

    model = os.path.join(workdir, "zero123-xl")
    t = time.perf_counter()
    build_zero123(model, size="tiny" if tiny else "full")
    write_s = time.perf_counter() - t
    image = os.path.join(ROOT, "data", "csm_luigi_rgba.png")
    over = [f"input={image}", "save_path=luigi", f"outdir={workdir}", f"guidance_model={model}", f"device={device}",
            f"iters={iters}", f"iters_refine={iters_refine}", "quiet=true"] + (TINY if tiny else [])
    cfg = load_config(os.path.join(ROOT, "configs", "image.yaml"), over)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    r1 = Stage1(cfg, log=lambda *a: None).run()
    peak1 = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    r2 = Stage2(cfg, log=lambda *a: None).run()
    stage2_wall = time.perf_counter() - t
    peak2 = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    run = load_json(os.path.join(workdir, "luigi_run.json"))
    return {
        "model": "tiny Zero123 (hub layout)" if tiny else "Zero123-XL size, random weights (hub layout)",
        "write_checkpoint_s": round(write_s, 1),
        "stage1": {"iters": iters, "gaussians": r1["gaussians"], "faces": r1.get("mesh", {}).get("faces"),
                   **r1["timings"], "peak_gpu_gib": None if peak1 is None else round(peak1, 2)},
        "stage2": {"iters_refine": iters_refine, **r2["timings"], "wall_with_load": round(stage2_wall, 3),
                   "peak_gpu_gib": None if peak2 is None else round(peak2, 2)},
        "rasterizer": cfg.rasterizer, "mesh_renderer": cfg.mesh_renderer, "guidance_dtype": cfg.guidance_dtype,
        "versions": run.get("versions"),
    }


def main():
    from cli import COUNT_ARG, NONNEG_INT_ARG

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny model and sizes (a smoke run of this script)")
    ap.add_argument("--iters", type=COUNT_ARG, default=500)
    ap.add_argument("--iters-refine", type=NONNEG_INT_ARG, default=50)
    ap.add_argument("--skip-install", action="store_true", help="do not pip-install gsplat")
    ap.add_argument("--skip", nargs="*", default=[], choices=["parity", "render_bench", "pipeline", "guidance"])
    args = ap.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device here; gpu_check needs one (or run --tiny --device cpu for a smoke run)",
              file=sys.stderr)
        return 2
    report = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "torch": torch.__version__, "cpus": os.cpu_count(),
                          "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    report["gsplat"] = ensure_gsplat(args.skip_install or not torch.cuda.is_available())
    if "parity" not in args.skip:
        report["parity_tests"] = sh([sys.executable, "-m", "pytest", "-q", "tests/test_renderer.py", "-k", "cuda"])
    if "render_bench" not in args.skip:
        backends = ["torch"] + [b for b in ("gsplat", "inria") if torch.cuda.is_available()
                                and importlib.util.find_spec({"gsplat": "gsplat", "inria": "diff_gaussian_rasterization"}[b])]
        bench_json = os.path.join(tempfile.gettempdir(), "gpu_check_render.json")
        sizes = ["--sizes", "128", "--counts", "1000", "--extra", "--reps", "1"] if args.tiny else []
        r = sh([sys.executable, "benchmarks/bench_render.py", "--backends", *backends, "--device", args.device,
                "--json", bench_json, *sizes])
        report["render_bench"] = load_json(bench_json) if r["rc"] == 0 and os.path.isfile(bench_json) else r
    if "pipeline" not in args.skip:
        work = tempfile.mkdtemp(prefix="gpu_check_")
        try:
            report["pipeline"] = pipeline(args.device, args.tiny, args.iters, args.iters_refine, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if "guidance" not in args.skip:
        bench_json = os.path.join(tempfile.gettempdir(), "gpu_check_guidance.json")
        r = sh([sys.executable, "benchmarks/bench_guidance.py", "--models", "zero123", "sd", "mvdream", "imagedream",
                "--device", args.device, "--json", bench_json, *(["--tiny", "--reps", "1"] if args.tiny else [])])
        report["guidance_bench"] = load_json(bench_json) if r["rc"] == 0 and os.path.isfile(bench_json) else r
    save_json(args.out, report)
    print(f"\nwrote {args.out}")
    if "parity_tests" in report:
        p = report["parity_tests"]
        print(f"parity tests: rc {p['rc']}: {p['tail'].strip().splitlines()[-1] if p['tail'].strip() else ''}")
    if "pipeline" in report:
        p = report["pipeline"]
        s1, s2 = p["stage1"], p["stage2"]
        print("\n| stage | load guidance (s) | train (s) | mesh export (s) | total (s) | peak GPU (GiB) |\n|---|---|---|---|---|---|")
        print(f"| 1 ({s1['iters']} steps) | {s1.get('load_guidance')} | {s1.get('train')} | {s1.get('mesh_export')} | "
              f"{s1.get('total')} | {s1['peak_gpu_gib']} |")
        print(f"| 2 ({s2['iters_refine']} steps) | - | {s2.get('train')} | - | {s2.get('total')} | {s2['peak_gpu_gib']} |")
    rows = report.get("guidance_bench", {}).get("results")
    if rows:
        print("\n| prior | op | views | median (s) | peak GPU (GiB) |\n|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['model']} | {r['op']} | {r['views']} | {r['median_s']} | {r['peak_gpu_gib']} |")
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
