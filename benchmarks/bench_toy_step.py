"""Cost of one training step of the toy prior's UNet (toy.prior.UNET_CONFIG) on this machine:
is it overhead-bound (a bigger batch nearly free) or compute-bound (time linear in the batch)? And
do the usual CPU speed-ups help?

    python benchmarks/bench_toy_step.py --batches 64 128 256 512 --threads 2 [--compile] --json out.json

Per row: the mean wall time of a forward + backward + AdamW step on random inputs (8x8 latents,
8 input channels, one cross-attention token), after warm-up steps. Variants at the first batch
size: channels-last memory format, diffusers' classic attention processor, and with ``--compile``
torch.compile (its compile time reported apart).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import report  # noqa: E402
from outputs import machine_info  # noqa: E402


def step_seconds(unet, batch: int, steps: int, warmup: int = 2, channels_last: bool = False) -> float:
    import torch.nn.functional as F

    from toy.prior import UNET_CONFIG

    g = torch.Generator().manual_seed(0)
    size, emb = UNET_CONFIG["sample_size"], UNET_CONFIG["cross_attention_dim"]
    x = torch.randn(batch, UNET_CONFIG["in_channels"], size, size, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    token = torch.randn(batch, 1, emb, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    times = []
    for _ in range(warmup + steps):
        t0 = time.perf_counter()
        pred = unet(x, t, encoder_hidden_states=token).sample
        loss = F.mse_loss(pred, x[:, :UNET_CONFIG["out_channels"]])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return sum(times[warmup:]) / steps


def main(argv=None):
    from cli import COUNT_ARG, NONNEG_INT_ARG

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=COUNT_ARG, nargs="+", default=[64, 128, 256, 512])
    ap.add_argument("--steps", type=COUNT_ARG, default=4, help="timed steps per row (after 2 warm-up steps)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (minutes to compile)")
    ap.add_argument("--threads", type=NONNEG_INT_ARG, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor

    from toy.prior import UNET_CONFIG

    def fresh():
        torch.manual_seed(0)
        return UNet2DConditionModel(**UNET_CONFIG)

    rows = [{"variant": "default", "batch": b, "seconds": step_seconds(fresh(), b, args.steps)} for b in args.batches]
    b0 = args.batches[0]
    rows.append({"variant": "channels_last", "batch": b0,
                 "seconds": step_seconds(fresh().to(memory_format=torch.channels_last), b0, args.steps,
                                         channels_last=True)})
    classic = fresh()
    classic.set_attn_processor(AttnProcessor())
    rows.append({"variant": "classic attention", "batch": b0, "seconds": step_seconds(classic, b0, args.steps)})
    if args.compile:
        t0 = time.perf_counter()
        compiled = torch.compile(fresh())
        step_seconds(compiled, b0, 1, warmup=0)  # the first call compiles
        compile_s = time.perf_counter() - t0
        rows.append({"variant": "torch.compile", "batch": b0, "seconds": step_seconds(compiled, b0, args.steps),
                     "compile_seconds": compile_s})
    rows.append({"variant": "default (again)", "batch": b0, "seconds": step_seconds(fresh(), b0, args.steps)})
    print(report.toy_step_table({"rows": rows}))
    if args.json:
        from io_utils import save_json

        save_json(args.json, {"machine": machine_info(), "threads": torch.get_num_threads(), "rows": rows})
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
