"""Benchmark one SDS step and one refine call of each prior at its default resolution.

    python benchmarks/bench_guidance.py [--models zero123 sd mvdream imagedream] [--reps 2] [--json out.json]

No checkpoint is needed: a folder in the published hub layout is written with the real
architectures' configs (Zero123-XL: the SD-1.x UNet with 8 input channels, the SD VAE, a CLIP
ViT-L/14 image encoder; SD 2.1 base: its UNet and an OpenCLIP-H-size text encoder) and random
weights, which cost the same to run as the trained ones, and loaded through the same code path
(build_s includes writing and loading it). Defaults follow the configs: Zero123 renders at 256
(32x32 latents), SD at 512 (64x64); refine at the reference's first strength 0.8 skips 40 of a
50-step DDIM schedule, i.e. runs 10 denoising steps.

MVDream and ImageDream: their single-file checkpoints (``sd-v2.1-base-4view.pt``, ``-ipmv.pt``) in
the published key layout at full size (guidance/ldm_layouts.py; fp32 as published, 5.2 / 8.1 GB),
written to a temporary folder and loaded through the real path (conversion included in build_s).
One step is one object: 4 views at 256x256 (ImageDream runs 5 frames: the 4 views and the input
view), classifier-free guidance in the same batch.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


from cameras import Camera, View  # noqa: E402
from benchmarks import report  # noqa: E402
from outputs import machine_info  # noqa: E402


def build(kind, device, folder, size="full"):
    """Write a full-size random-weight checkpoint in the published hub layout, then load it through
    the same code path as the real one."""
    from guidance.hub_layouts import build_sd, build_zero123

    from guidance.sd import StableDiffusionGuidance
    from guidance.zero123 import Zero123Guidance

    if kind in ("mvdream", "imagedream"):
        from guidance.hub_layouts import write_clip_tokenizer
        from guidance.ldm_layouts import build_multiview

        from guidance.mvdream import ImageDreamGuidance, MVDreamGuidance

        tok = os.path.join(folder, "tokenizer")
        write_clip_tokenizer(tok)  # byte-level: the prompt's tokens differ, the cost does not (77 always)
        file = build_multiview(folder, kind, size=size)
        if kind == "mvdream":
            g = MVDreamGuidance(file, tokenizer=tok, device=device, guidance_scale=100.0, weighting="uniform")
            return g.prepare("a photo of a hamburger", ""), 256
        g = ImageDreamGuidance(file, tokenizer=tok, device=device, guidance_scale=5.0, weighting="uniform")
        return g.prepare(image=torch.rand(3, 256, 256), mask=torch.ones(1, 256, 256), prompt=""), 256
    if kind == "zero123":
        build_zero123(folder, size=size)
        g = Zero123Guidance(folder, device=device)
        return g.prepare(torch.rand(3, 256, 256), torch.ones(1, 256, 256), elevation=0.0, radius=2.0), 256
    build_sd(folder, size=size)  # timing does not depend on the (byte-level) vocabulary
    g = StableDiffusionGuidance(folder, device=device, guidance_scale=100.0)
    return g.prepare("a photo of a hamburger", ""), 512


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["zero123", "sd"])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json")
    ap.add_argument("--tiny", action="store_true", help="tiny models, no warm-up (a smoke run of this script; "
                    "times mean nothing)")
    args = ap.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for kind in args.models:
        folder = tempfile.mkdtemp(prefix=f"bench_{kind}_")
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        try:
            g, res = build(kind, device, folder, "tiny" if args.tiny else "full")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        build_s = time.perf_counter() - t
        n = 4 if kind in ("mvdream", "imagedream") else 1  # views per step
        views = [View(Camera.orbit(10.0, 60.0 + 90.0 * i, 2.0, 49.1, res), 10.0, 60.0 + 90.0 * i, 2.0)
                 for i in range(n)]

        def sds():
            x = torch.rand(n, 3, res, res, device=device, requires_grad=True)
            g.train_step(x, views, 0.5).backward()

        def refine():
            g.refine(torch.rand(n, 3, res, res, device=device), views, 0.8, 50)

        for name, fn in (("sds_step", sds), ("refine_10_steps", refine)):
            if not args.tiny:  # a smoke run's times mean nothing: no warm-up
                fn()  # warm-up
            ts = []
            for _ in range(args.reps):
                sync()
                t0 = time.perf_counter()
                fn()
                sync()
                ts.append(time.perf_counter() - t0)
            r = {"model": kind + (" (tiny)" if args.tiny else ""), "op": name, "views": n, "resolution": res, "device": device, "dtype": str(g.dtype),
                 "median_s": round(statistics.median(ts), 3), "build_s": round(build_s, 1),
                 "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None}
            rows.append(r)
            print(json.dumps(r), flush=True)
        g = None  # free this prior before the next one is built (the full-size ones take several GB)
        import gc

        gc.collect()
    report.publish(args.json, {"machine": {**machine_info(), "threads": torch.get_num_threads()}, "results": rows},
                   report.guidance_table)


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
