"""Single-file MVDream / ImageDream checkpoints in the published layout, written key by key from
the reference code's module structure (never by saving our own classes):

* ``model.diffusion_model.*``: bytedance/MVDream ``openaimodel.MultiViewUNetModel`` built with
  ``mvdream/configs/sd-v2-base.yaml`` (ResBlocks ``in_layers.{0,2}`` / ``emb_layers.1`` /
  ``out_layers.{0,3}`` / ``skip_connection``; ``SpatialTransformer3D`` with ``norm``, linear
  ``proj_in`` / ``proj_out`` and ``transformer_blocks.N.{attn1,attn2}.to_{q,k,v}`` (no bias),
  ``to_out.0``, GEGLU ``ff.net.0.proj``, ``ff.net.2``, ``norm1..3``; ``Downsample.op``,
  ``Upsample.conv``; ``time_embed.{0,2}``, ``camera_embed.{0,2}``, ``out.{0,2}``); ImageDream adds
  ``attn2.to_k_ip`` / ``to_v_ip`` and the ``image_embed`` Resampler (``latents``, ``proj_in``,
  ``proj_out``, ``norm_out``, ``layers.N.0.{norm1,norm2,to_q,to_kv,to_out}``,
  ``layers.N.1.{0,1,3}``);
* ``first_stage_model.*`` (MVDream; ImageDream's ``LatentDiffusionInterface`` names it ``vae_model.*``):
  the LDM ``AutoencoderKL`` (``encoder.down.N.block.M.{norm1,conv1,norm2,
  conv2,nin_shortcut}``, ``downsample.conv``, ``mid.{block_1,attn_1,block_2}``, ``norm_out``,
  ``conv_out``, ``quant_conv``, ``post_quant_conv``; the decoder's ``up.N`` likewise);
* ``cond_stage_model.model.*`` (MVDream; ImageDream: ``clip_model.model.*``): OpenCLIP ViT-H/14 (text tower: ``token_embedding``,
  ``positional_embedding``, ``transformer.resblocks.N.{ln_1,attn.in_proj_*,attn.out_proj,ln_2,
  mlp.c_fc,mlp.c_proj}``, ``ln_final``, ``text_projection``, ``logit_scale``; ImageDream keeps the
  vision tower ``visual.{conv1,class_embedding,positional_embedding,ln_pre,transformer,ln_post,proj}``);
* the interface's schedule buffers (``betas``, ``alphas_cumprod``, ...), from LDM's
  ``make_beta_schedule("linear")`` formulas.

``size="full"`` is the published architecture (random weights: benchmarks, GPU check); ``"tiny"``
the same architecture narrowed (64 UNet channels so that the published 64 channels per head still
divide; a 4-level VAE 32 channels wide; 3 text / vision blocks) for CPU tests.
"""
from __future__ import annotations

import os

import numpy as np
import torch

FULL = {"C": 320, "mult": [1, 2, 4, 4], "nres": 2, "attn_ds": [4, 2, 1], "context": 1024, "depth": 1,
        "vae_ch": 128, "vae_mult": [1, 2, 4, 4], "vae_nres": 2, "text_width": 1024, "text_layers": 24,
        "vocab": 49408, "vis_width": 1280, "vis_layers": 32, "vis_patch": 14, "vis_grid": 16, "ip_dim": 16,
        "ip_depth": 4, "ip_heads": 12}
TINY = {"C": 64, "mult": [1, 2], "nres": 1, "attn_ds": [1], "context": 64, "depth": 1,
        "vae_ch": 32, "vae_mult": [1, 1, 1, 1], "vae_nres": 1, "text_width": 64, "text_layers": 3,
        "vocab": 514, "vis_width": 80, "vis_layers": 3, "vis_patch": 8, "vis_grid": 4, "ip_dim": 16,
        "ip_depth": 2, "ip_heads": 1}


class Writer:
    """Collects (key, shape) in order and fills them: norms at 1 / 0, the rest small random."""

    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)
        self.sd = {}

    def t(self, key, *shape, kind="w"):
        if kind == "one":
            self.sd[key] = torch.ones(shape)
        elif kind == "zero":
            self.sd[key] = torch.zeros(shape)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
            self.sd[key] = torch.randn(shape, generator=self.g) * (0.5 / max(fan_in, 1) ** 0.5)

    def norm(self, key, n):
        self.t(key + ".weight", n, kind="one")
        self.t(key + ".bias", n, kind="zero")

    def linear(self, key, n_out, n_in, bias=True):
        self.t(key + ".weight", n_out, n_in)
        if bias:
            self.t(key + ".bias", n_out, kind="zero")

    def conv(self, key, n_out, n_in, k):
        self.t(key + ".weight", n_out, n_in, k, k)
        self.t(key + ".bias", n_out, kind="zero")


# --------------------------------------------------------------------------- UNet (openaimodel)
def _resblock(w, p, ch, out, emb):
    w.norm(p + "in_layers.0", ch)
    w.conv(p + "in_layers.2", out, ch, 3)
    w.linear(p + "emb_layers.1", out, emb)
    w.norm(p + "out_layers.0", out)
    w.conv(p + "out_layers.3", out, out, 3)
    if out != ch:
        w.conv(p + "skip_connection", out, ch, 1)


def _transformer(w, p, ch, a, ip):
    w.norm(p + "norm", ch)
    w.linear(p + "proj_in", ch, ch)
    for d in range(a["depth"]):
        b = p + f"transformer_blocks.{d}."
        for name in ("to_q", "to_k", "to_v"):
            w.linear(b + "attn1." + name, ch, ch, bias=False)
        w.linear(b + "attn1.to_out.0", ch, ch)
        w.linear(b + "ff.net.0.proj", ch * 8, ch)  # GEGLU: 2 x (4 x ch)
        w.linear(b + "ff.net.2", ch, ch * 4)
        w.linear(b + "attn2.to_q", ch, ch, bias=False)
        w.linear(b + "attn2.to_k", ch, a["context"], bias=False)
        w.linear(b + "attn2.to_v", ch, a["context"], bias=False)
        if ip:
            w.linear(b + "attn2.to_k_ip", ch, a["context"], bias=False)
            w.linear(b + "attn2.to_v_ip", ch, a["context"], bias=False)
        w.linear(b + "attn2.to_out.0", ch, ch)
        for n in ("norm1", "norm2", "norm3"):
            w.norm(b + n, ch)
    w.linear(p + "proj_out", ch, ch)


def write_unet(w, a, ip):
    P = "model.diffusion_model."
    C = a["C"]
    emb = 4 * C
    w.linear(P + "time_embed.0", emb, C)
    w.linear(P + "time_embed.2", emb, emb)
    w.linear(P + "camera_embed.0", emb, 16)
    w.linear(P + "camera_embed.2", emb, emb)
    if ip:
        r = P + "image_embed."
        dim, inner = a["context"], 64 * a["ip_heads"]
        w.t(r + "latents", 1, a["ip_dim"], dim)
        w.linear(r + "proj_in", dim, a["vis_width"])
        w.linear(r + "proj_out", a["context"], dim)
        w.norm(r + "norm_out", a["context"])
        for i in range(a["ip_depth"]):
            w.norm(r + f"layers.{i}.0.norm1", dim)
            w.norm(r + f"layers.{i}.0.norm2", dim)
            w.linear(r + f"layers.{i}.0.to_q", inner, dim, bias=False)
            w.linear(r + f"layers.{i}.0.to_kv", 2 * inner, dim, bias=False)
            w.linear(r + f"layers.{i}.0.to_out", dim, inner, bias=False)
            w.norm(r + f"layers.{i}.1.0", dim)
            w.linear(r + f"layers.{i}.1.1", 4 * dim, dim, bias=False)
            w.linear(r + f"layers.{i}.1.3", dim, 4 * dim, bias=False)
    w.conv(P + "input_blocks.0.0", C, 4, 3)
    chans, ch, ds, i = [C], C, 1, 1
    for level, m in enumerate(a["mult"]):
        for _ in range(a["nres"]):
            _resblock(w, P + f"input_blocks.{i}.0.", ch, m * C, emb)
            ch = m * C
            if ds in a["attn_ds"]:
                _transformer(w, P + f"input_blocks.{i}.1.", ch, a, ip)
            chans.append(ch)
            i += 1
        if level != len(a["mult"]) - 1:
            w.conv(P + f"input_blocks.{i}.0.op", ch, ch, 3)
            chans.append(ch)
            ds *= 2
            i += 1
    _resblock(w, P + "middle_block.0.", ch, ch, emb)
    _transformer(w, P + "middle_block.1.", ch, a, ip)
    _resblock(w, P + "middle_block.2.", ch, ch, emb)
    i = 0
    for level, m in list(enumerate(a["mult"]))[::-1]:
        for j in range(a["nres"] + 1):
            ich = chans.pop()
            _resblock(w, P + f"output_blocks.{i}.0.", ch + ich, m * C, emb)
            ch = m * C
            k = 1
            if ds in a["attn_ds"]:
                _transformer(w, P + f"output_blocks.{i}.1.", ch, a, ip)
                k = 2
            if level and j == a["nres"]:
                w.conv(P + f"output_blocks.{i}.{k}.conv", ch, ch, 3)
                ds //= 2
            i += 1
    w.norm(P + "out.0", ch)
    w.conv(P + "out.2", 4, C, 3)


# --------------------------------------------------------------------------- VAE (LDM AutoencoderKL)
def _vae_res(w, p, cin, cout):
    w.norm(p + "norm1", cin)
    w.conv(p + "conv1", cout, cin, 3)
    w.norm(p + "norm2", cout)
    w.conv(p + "conv2", cout, cout, 3)
    if cin != cout:
        w.conv(p + "nin_shortcut", cout, cin, 1)


def _vae_mid(w, p, c):
    _vae_res(w, p + "mid.block_1.", c, c)
    w.norm(p + "mid.attn_1.norm", c)
    for n in ("q", "k", "v", "proj_out"):
        w.conv(p + f"mid.attn_1.{n}", c, c, 1)
    _vae_res(w, p + "mid.block_2.", c, c)


def write_vae(w, a, z=4, P="first_stage_model."):
    ch, mult, nres = a["vae_ch"], a["vae_mult"], a["vae_nres"]
    w.conv(P + "encoder.conv_in", ch, 3, 3)
    cin = ch
    for i, m in enumerate(mult):
        for j in range(nres):
            _vae_res(w, P + f"encoder.down.{i}.block.{j}.", cin, ch * m)
            cin = ch * m
        if i != len(mult) - 1:
            w.conv(P + f"encoder.down.{i}.downsample.conv", cin, cin, 3)
    _vae_mid(w, P + "encoder.", cin)
    w.norm(P + "encoder.norm_out", cin)
    w.conv(P + "encoder.conv_out", 2 * z, cin, 3)
    cin = ch * mult[-1]
    w.conv(P + "decoder.conv_in", cin, z, 3)
    _vae_mid(w, P + "decoder.", cin)
    for i in reversed(range(len(mult))):
        for j in range(nres + 1):
            _vae_res(w, P + f"decoder.up.{i}.block.{j}.", cin, ch * mult[i])
            cin = ch * mult[i]
        if i != 0:
            w.conv(P + f"decoder.up.{i}.upsample.conv", cin, cin, 3)
    w.norm(P + "decoder.norm_out", cin)
    w.conv(P + "decoder.conv_out", 3, cin, 3)
    w.conv(P + "quant_conv", 2 * z, 2 * z, 1)
    w.conv(P + "post_quant_conv", z, z, 1)


# --------------------------------------------------------------------------- OpenCLIP ViT-H/14
def _clip_blocks(w, p, width, layers):
    for i in range(layers):
        b = p + f"transformer.resblocks.{i}."
        w.norm(b + "ln_1", width)
        w.t(b + "attn.in_proj_weight", 3 * width, width)
        w.t(b + "attn.in_proj_bias", 3 * width, kind="zero")
        w.linear(b + "attn.out_proj", width, width)
        w.norm(b + "ln_2", width)
        w.linear(b + "mlp.c_fc", 4 * width, width)
        w.linear(b + "mlp.c_proj", width, 4 * width)


def write_open_clip(w, a, visual, P="cond_stage_model.model."):
    W = a["text_width"]
    w.t(P + "positional_embedding", 77, W)
    w.t(P + "text_projection", W, W)
    w.sd[P + "logit_scale"] = torch.tensor(float(np.log(1 / 0.07)))
    w.t(P + "token_embedding.weight", a["vocab"], W)
    _clip_blocks(w, P, W, a["text_layers"])
    w.norm(P + "ln_final", W)
    if visual:
        V, p = a["vis_width"], P + "visual."
        w.t(p + "class_embedding", V)
        w.t(p + "positional_embedding", a["vis_grid"] ** 2 + 1, V)
        w.t(p + "proj", V, W)
        w.t(p + "conv1.weight", V, 3, a["vis_patch"], a["vis_patch"])
        w.norm(p + "ln_pre", V)
        _clip_blocks(w, p, V, a["vis_layers"])
        w.norm(p + "ln_post", V)


def write_schedule(w, start=0.00085, end=0.012, n=1000):
    """LDM's register_schedule with make_beta_schedule("linear")."""
    betas = np.linspace(start ** 0.5, end ** 0.5, n, dtype=np.float64) ** 2
    alphas = 1.0 - betas
    ac = np.cumprod(alphas)
    prev = np.append(1.0, ac[:-1])
    post_var = betas * (1.0 - prev) / (1.0 - ac)
    bufs = {"betas": betas, "alphas_cumprod": ac, "alphas_cumprod_prev": prev, "sqrt_alphas_cumprod": np.sqrt(ac),
            "sqrt_one_minus_alphas_cumprod": np.sqrt(1 - ac), "log_one_minus_alphas_cumprod": np.log(1 - ac),
            "sqrt_recip_alphas_cumprod": np.sqrt(1 / ac), "sqrt_recipm1_alphas_cumprod": np.sqrt(1 / ac - 1),
            "posterior_variance": post_var,
            "posterior_log_variance_clipped": np.log(np.maximum(post_var, 1e-20)),
            "posterior_mean_coef1": betas * np.sqrt(prev) / (1 - ac),
            "posterior_mean_coef2": (1 - prev) * np.sqrt(alphas) / (1 - ac)}
    for k, v in bufs.items():
        w.sd[k] = torch.tensor(v, dtype=torch.float32)


def multiview_state_dict(kind="mvdream", size="tiny", seed=0) -> dict:
    """The state dict of ``sd-v2.1-base-4view.pt`` (kind mvdream) or ``sd-v2.1-base-4view-ipmv.pt``
    (imagedream), random weights."""
    a = FULL if size == "full" else TINY
    ip = kind == "imagedream"
    w = Writer(seed)
    write_schedule(w)
    write_unet(w, a, ip)
    # each project's interface names its parts: MVDream's LatentDiffusion first_stage_model /
    # cond_stage_model, ImageDream's LatentDiffusionInterface vae_model / clip_model
    write_vae(w, a, P="vae_model." if ip else "first_stage_model.")
    write_open_clip(w, a, visual=ip, P="clip_model.model." if ip else "cond_stage_model.model.")
    return w.sd


def build_multiview(path, kind="mvdream", size="tiny", fmt="pt", seed=0) -> str:
    """Write the checkpoint file under folder ``path`` with its published name; returns the file.
    ``fmt`` pt (torch.save, as published) or safetensors."""
    os.makedirs(path, exist_ok=True)
    sd = multiview_state_dict(kind, size, seed)
    name = "sd-v2.1-base-4view" + ("-ipmv" if kind == "imagedream" else "")
    if fmt == "safetensors":
        from safetensors.torch import save_file

        file = os.path.join(path, name + ".safetensors")
        save_file({k: v.contiguous() for k, v in sd.items()}, file)
    else:
        file = os.path.join(path, name + ".pt")
        torch.save(sd, file)
    return file
