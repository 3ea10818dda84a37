"""Benchmark one SDS step and one refine call of each prior at its default resolution.

    python scripts/bench_guidance.py [--models zero123 sd] [--reps 2] [--json out.json]

No checkpoint is needed: the networks are built from the real architectures' configs (Zero123-XL:
the SD-1.x UNet with 8 input channels, the SD VAE, a CLIP ViT-L/14 image encoder; SD 2.1 base:
its UNet and an OpenCLIP-H-size text encoder) with random weights, which cost the same to run as
the trained ones, and go through the same guidance classes the pipeline uses. Defaults follow
the configs: Zero123 renders at 256 (32x32 latents), SD at 512 (64x64); refine runs
refine_strength_start (0.2) of a 50-step DDIM schedule, i.e. 10 denoising steps.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from cameras import Camera, View  # noqa: E402


def sd_vae(sample_size):
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         sample_size=sample_size)


def unet(in_channels, cross_dim, sample_size, heads, linear_proj):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=sample_size, in_channels=in_channels, out_channels=4, layers_per_block=2,
                                block_out_channels=(320, 640, 1280, 1280),
                                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                                cross_attention_dim=cross_dim, attention_head_dim=heads,
                                use_linear_projection=linear_proj)


def build(kind, device):
    from guidance.sd import StableDiffusionGuidance
    from guidance.zero123 import CCProjection, Zero123Guidance
    from tiny_models import tiny_scheduler

    if kind == "zero123":
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        class FullZero123(Zero123Guidance):
            def _load(self, path):
                self.vae, self.unet = sd_vae(256), unet(8, 768, 32, 8, False)
                self.image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
                    hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=24,
                    image_size=224, patch_size=14, projection_dim=768))
                self.cc_projection = CCProjection(772, 768)
                self.scheduler = tiny_scheduler()
                self.clip_size = 224

        g = FullZero123("random-weights", device=device)
        img = torch.rand(3, 256, 256)
        return g.prepare(img, torch.ones(1, 256, 256), elevation=0.0, radius=2.0), 256
    from transformers import CLIPTextConfig, CLIPTextModel

    class FullSD(StableDiffusionGuidance):
        def _load(self, path):
            import tempfile

            from tiny_models import tiny_clip_tokenizer
            from transformers import CLIPTokenizer

            self.vae, self.unet = sd_vae(512), unet(4, 1024, 64, [5, 10, 20, 20], True)
            self.text_encoder = CLIPTextModel(CLIPTextConfig(
                hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23,
                vocab_size=49408, max_position_embeddings=77, hidden_act="gelu", projection_dim=512))
            d = tempfile.mkdtemp()
            tiny_clip_tokenizer(d)  # timing does not depend on the vocabulary
            self.tokenizer = CLIPTokenizer.from_pretrained(d)
            self.scheduler = tiny_scheduler()

    g = FullSD("random-weights", device=device, guidance_scale=100.0)
    return g.prepare("a photo of a hamburger", ""), 512


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["zero123", "sd"])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json")
    args = ap.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for kind in args.models:
        t = time.perf_counter()
        g, res = build(kind, device)
        build_s = time.perf_counter() - t
        views = [View(Camera.orbit(10.0, 60.0, 2.0, 49.1, res), 10.0, 60.0, 2.0)]

        def sds():
            x = torch.rand(1, 3, res, res, device=device, requires_grad=True)
            g.train_step(x, views, 0.5).backward()

        def refine():
            g.refine(torch.rand(1, 3, res, res, device=device), views, 0.2, 50)

        for name, fn in (("sds_step", sds), ("refine_10_steps", refine)):
            fn()  # warm-up
            ts = []
            for _ in range(args.reps):
                sync()
                t0 = time.perf_counter()
                fn()
                sync()
                ts.append(time.perf_counter() - t0)
            r = {"model": kind, "op": name, "resolution": res, "device": device, "dtype": str(g.dtype),
                 "median_s": round(statistics.median(ts), 3), "build_s": round(build_s, 1)}
            rows.append(r)
            print(json.dumps(r), flush=True)
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
               "threads": torch.get_num_threads(),
               "gpu": torch.cuda.get_device_name() if device == "cuda" else None}
    print(json.dumps({"machine": machine}))
    print("\n| model | op | resolution | device | dtype | median (s) |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['op']} | {r['resolution']} | {r['device']} | {r['dtype']} | {r['median_s']} |")
    if args.json:
        json.dump({"machine": machine, "results": rows}, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
