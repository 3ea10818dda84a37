"""Does stage 2 improve the texture when its targets are right? Measured with the oracle Zero123
(toy/oracle.py) on held-out toy objects, separating what the VAE does from what stage 2 does.

    python benchmarks/bench_stage2.py --seeds 100000 100001 100002 --json bench_results/stage2_oracle.json

For each object one oracle stage 1 per export setting (configs/toy.yaml; the reference's 1024 px
texture baked at 512 px for the reference's stage 2), then stage 2 under each setting of VARIANTS,
twice: with the oracle's own targets (the production SDEdit, whose output with a perfect denoiser
is the VAE round trip of the ground truth whatever the strength) and with exact targets (the
ground-truth renders themselves: a perfect VAE). ``vae`` is the targets' ceiling: the VAE round
trip of the ground truth at the prior's resolution, upsampled, against the ground truth. Every
figure: PSNR / SSIM at the 8 views around (elevation 0, 128 px, on white), as bench_toy.py.

JSON: {"<seed>": {"vae": {psnr, ssim}, "<variant>": {"stage1": {...}, "oracle": {...},
"exact": {...}}}, "summary": {...}}.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from outputs import machine_info  # noqa: E402

from toy import objects as toy_objects  # noqa: E402

REFERENCE_EXPORT = ("texture_size=1024", "bake_resolution=512")  # the reference's coarse-mesh texture
REFERENCE_REFINE = ("refine_resolution=512", "iters_refine=50", "refine_inference_steps=50", "texture_lr=0.2")
# name -> (stage-1 export overrides, stage-2 overrides), on top of configs/toy.yaml
VARIANTS = {
    "toy.yaml (shipped: 256 px, lr 0.02)": ((), ()),
    "before: 64 px, lr 0.2": ((), ("refine_resolution=64", "texture_lr=0.2")),
    "64 px, lr 0.02": ((), ("refine_resolution=64",)),
    "256 px, lr 0.2": ((), ("texture_lr=0.2",)),
    "reference: 512 px, 1024 tex, lr 0.2, 50 steps": (REFERENCE_EXPORT, REFERENCE_REFINE),
    "reference, lr 0.02": (REFERENCE_EXPORT, REFERENCE_REFINE[:-1] + ("texture_lr=0.02",)),
}


@torch.no_grad()
def vae_ceiling(model: str, seed: int) -> dict:
    """PSNR / SSIM of the VAE round trip of the ground truth (at the prior's resolution, upsampled
    to bench_toy's view size) against the ground truth, at bench_toy's 8 views."""
    from toy.runs import IOU_AZIMUTHS, VIEW_RESOLUTION
    from cameras import Camera
    from metrics import psnr, ssim
    from guidance.zero123 import Zero123Guidance

    g = Zero123Guidance(model)
    gt = toy_objects.render_views(toy_objects.make_object(seed), [
        Camera.orbit(0.0, a, toy_objects.RADIUS, toy_objects.FOVY, VIEW_RESOLUTION) for a in IOU_AZIMUTHS])[0]
    rt = F.interpolate(g.decode(g.encode(gt, sample=False)), gt.shape[-2:], mode="bilinear", align_corners=False)
    return {"psnr": float(np.mean([psnr(a, b) for a, b in zip(rt, gt)])),
            "ssim": float(np.mean([ssim(a, b) for a, b in zip(rt, gt)]))}


def bench_object(seed, model, config, work, variants, log) -> dict:
    from toy.runs import colour_metrics, run_stages
    from config import load_config
    from mesh import Mesh
    from toy.oracle import oracle_builder
    from trainer import Context, Stage2

    png, _ = toy_objects.write_example(seed, os.path.join(work, "inputs"))
    gt = toy_objects.make_object(seed)
    out = {"vae": vae_ceiling(model, seed)}
    coarse = {}
    common = [f"input={png}", f"outdir={work}", "quiet=true", f"guidance_model={model}"]
    for name, (export, refine) in variants.items():
        if export not in coarse:  # one oracle stage 1 per export setting
            tag = f"{seed}_s1_{len(coarse)}"
            paths = run_stages(config, common + [f"save_path={tag}"] + list(export), False, oracle_builder(seed))
            coarse[export] = (paths["coarse"], colour_metrics(Mesh.load(paths["coarse"]), gt))
        mesh, stage1 = coarse[export]
        row = {"stage1": stage1}
        for targets in ("oracle", "exact"):
            tag = f"{seed}_s2_{list(variants).index(name)}_{targets}"
            cfg = load_config(config, common + [f"save_path={tag}", f"mesh={mesh}"] + list(export) + list(refine))
            ctx = Context(cfg, lambda *a: None, oracle_builder(seed, exact_targets=targets == "exact"))
            t0 = time.perf_counter()
            s2 = Stage2(cfg, log=lambda *a: None, context=ctx)
            s2.run()
            row[targets] = {**colour_metrics(Mesh.load(s2.paths["fine"]), gt),
                            "seconds": round(time.perf_counter() - t0, 1)}
        out[name] = row
        log(f"{seed} {name}: stage 1 {stage1['psnr']:.2f}/{stage1['ssim']:.3f}, oracle {row['oracle']['psnr']:.2f}/"
            f"{row['oracle']['ssim']:.3f}, exact {row['exact']['psnr']:.2f}/{row['exact']['ssim']:.3f}")
    return out


def summarise(results, variants) -> dict:
    seeds = [k for k in results if k != "summary"]
    sm = {"vae": {m: float(np.mean([results[s]["vae"][m] for s in seeds])) for m in ("psnr", "ssim")}}
    for name in variants:
        row = {}
        for part in ("stage1", "oracle", "exact"):
            row[part] = {m: float(np.mean([results[s][name][part][m] for s in seeds])) for m in ("psnr", "ssim")}
        for targets in ("oracle", "exact"):
            row[f"improves_{targets}"] = sum(results[s][name][targets]["psnr"] > results[s][name]["stage1"]["psnr"]
                                             and results[s][name][targets]["ssim"] > results[s][name]["stage1"]["ssim"]
                                             for s in seeds)
        sm[name] = row
    sm["objects"] = len(seeds)
    return sm


def table(results, variants) -> str:
    sm = results["summary"]
    n = sm["objects"]
    lines = [f"VAE round trip of the ground truth (the targets' ceiling): PSNR {sm['vae']['psnr']:.2f} dB, "
             f"SSIM {sm['vae']['ssim']:.3f}", "",
             "| stage 2 setting | stage 1 PSNR / SSIM | stage 2, oracle targets | improves (of "
             f"{n}) | stage 2, exact targets | improves (of {n}) |", "|---|---|---|---|---|---|"]
    for name in variants:
        r = sm[name]
        f = lambda p: f"{r[p]['psnr']:.2f} / {r[p]['ssim']:.3f}"  # noqa: E731
        lines.append(f"| {name} | {f('stage1')} | {f('oracle')} | {r['improves_oracle']} | {f('exact')} | "
                     f"{r['improves_exact']} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[100000, 100001, 100002],
                    help=f"object seeds (>= {toy_objects.HELDOUT_START})")
    ap.add_argument("--variants", nargs="+", choices=range(len(VARIANTS)), type=int,
                    help="indices into VARIANTS (default: all): " + "; ".join(
                        f"{i}: {n}" for i, n in enumerate(VARIANTS)))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "toy-zero123"))
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "toy.yaml"))
    ap.add_argument("--work", default=os.path.join(ROOT, "logs", "bench_stage2"))
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    from toy.runs import check_seeds_and_model

    check_seeds_and_model(args.seeds, args.model)
    if args.threads:
        torch.set_num_threads(args.threads)
    from guidance.loading import quiet_libraries

    quiet_libraries()
    names = list(VARIANTS)
    variants = {names[i]: VARIANTS[names[i]] for i in (args.variants or range(len(names)))}
    os.makedirs(args.work, exist_ok=True)
    t0 = time.perf_counter()
    results = {str(s): bench_object(s, args.model, args.config, args.work, variants,
                                    lambda m: print(m, file=sys.stderr)) for s in args.seeds}
    results["summary"] = summarise(results, variants)
    results["summary"]["seconds"] = round(time.perf_counter() - t0, 1)
    print(table(results, variants))
    if args.json:
        from io_utils import save_json

        save_json(args.json, {**results, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
