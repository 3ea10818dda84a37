"""The reference's multi-view UNet forward, written as plain functions over the raw LDM state dict:
a slow, obviously correct oracle for the converted diffusers UNet with our processors.

Follows bytedance/MVDream ``openaimodel.MultiViewUNetModel.forward`` and ``attention.py``
(``SpatialTransformer3D``, ``BasicTransformerBlock3D``, ``MemoryEfficientCrossAttention`` with
ImageDream's image-prompt branch) and ImageDream's ``Resampler`` (IP-Adapter-Plus): timestep
embedding cat(cos, sin), camera embedding added to the time embedding, GroupNorm(32) with eps 1e-5
in the ResBlocks and 1e-6 in the transformers, self-attention over ``(b f) l c -> b (f l) c``,
GEGLU feed-forward, nearest 2x upsampling, strided-conv downsampling, skip connections popped in
reverse. Nothing here imports diffusers or our guidance code.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

P = "model.diffusion_model."
HEAD = 64  # channels per attention head (the published num_head_channels)


def timestep_embedding(t, dim, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], -1)


def lin(sd, p, x):
    return F.linear(x, sd[p + ".weight"], sd.get(p + ".bias"))


def gn(sd, p, x, eps):
    return F.group_norm(x, 32, sd[p + ".weight"], sd[p + ".bias"], eps)


def ln(sd, p, x):
    return F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], 1e-5)


def attention(q, k, v, heads):
    B, N, C = q.shape
    d = C // heads
    q, k, v = (t.reshape(B, -1, heads, d).permute(0, 2, 1, 3) for t in (q, k, v))
    w = torch.softmax(q @ k.transpose(-1, -2) * d ** -0.5, -1)
    return (w @ v).permute(0, 2, 1, 3).reshape(B, N, C)


def cross_attention(sd, p, x, ctx, heads, ip_tokens=0, ip_weight=1.0):
    q = lin(sd, p + ".to_q", x)
    if ip_tokens:
        ctx, ctx_ip = ctx[:, :-ip_tokens], ctx[:, -ip_tokens:]
    out = attention(q, lin(sd, p + ".to_k", ctx), lin(sd, p + ".to_v", ctx), heads)
    if ip_tokens:
        out = out + ip_weight * attention(q, lin(sd, p + ".to_k_ip", ctx_ip), lin(sd, p + ".to_v_ip", ctx_ip), heads)
    return lin(sd, p + ".to_out.0", out)


def resblock(sd, p, x, emb):
    h = F.conv2d(F.silu(gn(sd, p + "in_layers.0", x, 1e-5)), sd[p + "in_layers.2.weight"], sd[p + "in_layers.2.bias"],
                 padding=1)
    h = h + lin(sd, p + "emb_layers.1", F.silu(emb))[:, :, None, None]
    h = F.conv2d(F.silu(gn(sd, p + "out_layers.0", h, 1e-5)), sd[p + "out_layers.3.weight"],
                 sd[p + "out_layers.3.bias"], padding=1)
    skip = F.conv2d(x, sd[p + "skip_connection.weight"], sd[p + "skip_connection.bias"]) \
        if p + "skip_connection.weight" in sd else x
    return skip + h


def transformer3d(sd, p, x, ctx, frames, ip_tokens):
    b, c, h, w = x.shape
    heads = c // HEAD
    y = gn(sd, p + "norm", x, 1e-6).permute(0, 2, 3, 1).reshape(b, h * w, c)
    y = lin(sd, p + "proj_in", y)
    d = 0
    while f"{p}transformer_blocks.{d}.norm1.weight" in sd:
        blk = f"{p}transformer_blocks.{d}."
        y = y.reshape(b // frames, frames * h * w, c)  # "(b f) l c -> b (f l) c"
        n1 = ln(sd, blk + "norm1", y)
        y = cross_attention(sd, blk + "attn1", n1, n1, heads) + y
        y = y.reshape(b, h * w, c)
        y = cross_attention(sd, blk + "attn2", ln(sd, blk + "norm2", y), ctx, heads, ip_tokens) + y
        a, gate = lin(sd, blk + "ff.net.0.proj", ln(sd, blk + "norm3", y)).chunk(2, -1)
        y = lin(sd, blk + "ff.net.2", a * F.gelu(gate)) + y
        d += 1
    y = lin(sd, p + "proj_out", y).reshape(b, h, w, c).permute(0, 3, 1, 2)
    return y + x


def block(sd, p, x, emb, ctx, frames, ip_tokens):
    """One TimestepEmbedSequential: its layers by index, each recognised by its keys."""
    j = 0
    while any(k.startswith(f"{p}{j}.") for k in sd):
        q = f"{p}{j}."
        if q + "in_layers.0.weight" in sd:
            x = resblock(sd, q, x, emb)
        elif q + "proj_in.weight" in sd:
            x = transformer3d(sd, q, x, ctx, frames, ip_tokens)
        elif q + "op.weight" in sd:
            x = F.conv2d(x, sd[q + "op.weight"], sd[q + "op.bias"], stride=2, padding=1)
        elif q + "conv.weight" in sd:
            x = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), sd[q + "conv.weight"], sd[q + "conv.bias"],
                         padding=1)
        else:
            x = F.conv2d(x, sd[q + "weight"], sd[q + "bias"], padding=1)  # input_blocks.0.0
        j += 1
    return x


def resampler(sd, x, p=P + "image_embed."):
    latents = sd[p + "latents"].repeat(x.shape[0], 1, 1)
    x = lin(sd, p + "proj_in", x)
    i = 0
    while f"{p}layers.{i}.0.norm1.weight" in sd:
        a = f"{p}layers.{i}.0."
        xn, ln_ = ln(sd, a + "norm1", x), ln(sd, a + "norm2", latents)
        heads = sd[a + "to_q.weight"].shape[0] // HEAD
        q = lin(sd, a + "to_q", ln_)
        k, v = lin(sd, a + "to_kv", torch.cat([xn, ln_], 1)).chunk(2, -1)
        latents = lin(sd, a + "to_out", attention(q, k, v, heads)) + latents
        f = f"{p}layers.{i}.1."
        latents = lin(sd, f + "3", F.gelu(lin(sd, f + "1", ln(sd, f + "0", latents)))) + latents
        i += 1
    return ln(sd, p + "norm_out", lin(sd, p + "proj_out", latents))


def unet_forward(sd, x, t, context, camera, frames, ip=None, ip_img=None):
    """eps of ``x`` [(N F), 4, h, w] at timesteps ``t`` with text ``context`` [(N F), 77, D] and
    ``camera`` [(N F), 16]; ImageDream: image features ``ip`` [(N F), tokens, W] and the clean latent
    ``ip_img`` placed in every object's last frame."""
    C = sd[P + "input_blocks.0.0.weight"].shape[0]
    emb = lin(sd, P + "time_embed.2", F.silu(lin(sd, P + "time_embed.0", timestep_embedding(t, C))))
    emb = emb + lin(sd, P + "camera_embed.2", F.silu(lin(sd, P + "camera_embed.0", camera)))
    ip_tokens = 0
    if ip is not None:
        x = x.clone()
        x[frames - 1::frames] = ip_img
        tokens = resampler(sd, ip)
        ip_tokens = tokens.shape[1]
        context = torch.cat([context, tokens], 1)
    hs, h, i = [], x, 0
    while any(k.startswith(f"{P}input_blocks.{i}.") for k in sd):
        h = block(sd, f"{P}input_blocks.{i}.", h, emb, context, frames, ip_tokens)
        hs.append(h)
        i += 1
    h = block(sd, P + "middle_block.", h, emb, context, frames, ip_tokens)
    i = 0
    while any(k.startswith(f"{P}output_blocks.{i}.") for k in sd):
        h = block(sd, f"{P}output_blocks.{i}.", torch.cat([h, hs.pop()], 1), emb, context, frames, ip_tokens)
        i += 1
    h = F.silu(gn(sd, P + "out.0", h, 1e-5))
    return F.conv2d(h, sd[P + "out.2.weight"], sd[P + "out.2.bias"], padding=1)


def open_clip_text(sd, tokens, p="cond_stage_model.model."):
    """FrozenOpenCLIPEmbedder(layer="penultimate"): token + positional embedding, every residual
    block but the last (causal attention, GELU MLP), then ln_final."""
    x = sd[p + "token_embedding.weight"][tokens] + sd[p + "positional_embedding"]
    n = x.shape[1]
    blocks = len({k.split(".")[4] for k in sd if k.startswith(p + "transformer.resblocks.")})
    mask = torch.full((n, n), float("-inf")).triu(1)
    for i in range(blocks - 1):
        b = f"{p}transformer.resblocks.{i}."
        h = ln(sd, b + "ln_1", x)
        q, k, v = F.linear(h, sd[b + "attn.in_proj_weight"], sd[b + "attn.in_proj_bias"]).chunk(3, -1)
        heads = x.shape[-1] // HEAD
        B, N, C = q.shape
        d = C // heads
        q, k, v = (t.reshape(B, N, heads, d).permute(0, 2, 1, 3) for t in (q, k, v))
        w = torch.softmax(q @ k.transpose(-1, -2) * d ** -0.5 + mask, -1)
        a = (w @ v).permute(0, 2, 1, 3).reshape(B, N, C)
        x = x + lin(sd, b + "attn.out_proj", a)
        x = x + lin(sd, b + "mlp.c_proj", F.gelu(lin(sd, b + "mlp.c_fc", ln(sd, b + "ln_2", x))))
    return ln(sd, p + "ln_final", x)
