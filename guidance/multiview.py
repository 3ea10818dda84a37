"""The parts of MVDream / ImageDream that diffusers lacks, as small modules attached to diffusers'
UNet2DConditionModel, and the camera convention they were trained with.

Architecture (bytedance/MVDream ``openaimodel.MultiViewUNetModel`` and ``attention.py``; ImageDream
adds the image prompt): the Stable Diffusion 2.1 UNet, with

* a camera embedding ``camera_embed`` = Linear(16, 4C) - SiLU - Linear(4C, 4C) of the flattened
  4x4 camera matrix, added to the timestep embedding: diffusers' ``class_embed_type="projection"``
  (``class_embedding.linear_1`` / ``linear_2``) is exactly that;
* self-attention (``attn1``) over all the views of one object: the ``(B*F, L, C)`` tokens are
  regrouped as ``(B, F*L, C)`` (F frames per object, consecutive in the batch), attended, and
  regrouped back (``MultiViewAttnProcessor``); cross-attention stays per view;
* ImageDream only: 16 image-prompt tokens from a Perceiver ``Resampler`` (``image_embed``) of the
  OpenCLIP ViT-H/14 penultimate hidden states of the input image, appended to the 77 text tokens,
  and in every cross-attention a second attention to them with its own ``to_k_ip`` / ``to_v_ip``
  (``ImagePromptAttnProcessor``: out = attn(text) + ip_weight * attn(image tokens)); a fifth frame
  per object carries the input view's clean latent with a zero camera.

Camera convention (``mvdream/camera_utils.py``, used by the reference's guidance): the OpenGL
camera-to-world matrix is left-multiplied by the OpenGL -> Blender axis flip
[[1,0,0,0],[0,0,-1,0],[0,1,0,0],[0,0,0,1]], its translation scaled to unit length, and the 4x4
flattened row by row.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

GL_TO_BLENDER = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], np.float64)


def camera_embedding(c2w) -> torch.Tensor:
    """[N, 16] camera inputs of OpenGL camera-to-world matrices ``c2w`` ([N, 4, 4], numpy or torch)."""
    m = np.asarray(c2w.detach().cpu() if torch.is_tensor(c2w) else c2w, np.float64).reshape(-1, 4, 4)
    m = GL_TO_BLENDER[None] @ m
    t = m[:, :3, 3]
    m[:, :3, 3] = t / (np.linalg.norm(t, axis=1, keepdims=True) + 1e-8)
    return torch.from_numpy(m.reshape(-1, 16)).float()


def _attend(attn, query, key, value):
    """Multi-head scaled dot-product attention of diffusers ``Attention`` ``attn``'s heads; inputs
    and output [B, N, heads * head_dim] (before ``to_out``)."""
    B, h = query.shape[0], attn.heads
    d = query.shape[-1] // h
    q, k, v = (x.reshape(B, -1, h, d).transpose(1, 2) for x in (query, key, value))
    out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).reshape(B, -1, h * d)


class FrameCount:
    """How many consecutive batch items are views of one object (shared by all processors)."""

    def __init__(self, frames: int = 4):
        self.frames = frames


class MultiViewAttnProcessor:
    """Self-attention across the views of each object: tokens of ``frames`` consecutive batch items
    attend to each other (``(b f) l c -> b (f l) c``), never to another object's."""

    def __init__(self, count: FrameCount):
        self.count = count

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        BF, L, C = hidden_states.shape
        f = self.count.frames
        if BF % f:
            raise ValueError(f"multi-view attention: batch {BF} is not a multiple of {f} views per object")
        x = hidden_states.reshape(BF // f, f * L, C)
        out = attn.to_out[0](_attend(attn, attn.to_q(x), attn.to_k(x), attn.to_v(x)))
        return attn.to_out[1](out).reshape(BF, L, -1)


class ImagePromptAttnProcessor(nn.Module):
    """Cross-attention to the text tokens plus ``ip_weight`` times attention to the last
    ``ip_tokens`` tokens (the image prompt) through its own key/value projections."""

    def __init__(self, context_dim: int, inner_dim: int, ip_tokens: int, ip_weight: float = 1.0):
        super().__init__()
        self.to_k_ip = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_v_ip = nn.Linear(context_dim, inner_dim, bias=False)
        self.ip_tokens = ip_tokens
        self.ip_weight = ip_weight

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        text, image = encoder_hidden_states[:, :-self.ip_tokens], encoder_hidden_states[:, -self.ip_tokens:]
        q = attn.to_q(hidden_states)
        out = _attend(attn, q, attn.to_k(text), attn.to_v(text))
        out = out + self.ip_weight * _attend(attn, q, self.to_k_ip(image), self.to_v_ip(image))
        return attn.to_out[1](attn.to_out[0](out))


class PerceiverAttention(nn.Module):
    """Latents attend to [image features, latents] (IP-Adapter-Plus); key names as ImageDream's."""

    def __init__(self, dim: int, dim_head: int, heads: int):
        super().__init__()
        self.dim_head, self.heads = dim_head, heads
        inner = dim_head * heads
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x, latents):
        x, latents = self.norm1(x), self.norm2(latents)
        B, n, _ = latents.shape
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat([x, latents], 1)).chunk(2, dim=-1)
        q, k, v = (t.reshape(B, -1, self.heads, self.dim_head).transpose(1, 2) for t in (q, k, v))
        w = (q @ k.transpose(-2, -1) / math.sqrt(self.dim_head)).float().softmax(-1).to(q.dtype)
        return self.to_out((w @ v).transpose(1, 2).reshape(B, n, -1))


class Resampler(nn.Module):
    """``num_queries`` learnt latents refined by ``depth`` Perceiver layers over the projected image
    features, projected to the cross-attention width (ImageDream's ``image_embed``)."""

    def __init__(self, dim: int, depth: int, dim_head: int, heads: int, num_queries: int, embedding_dim: int,
                 output_dim: int, ff_mult: int = 4):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(1, num_queries, dim) / dim ** 0.5)
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim, dim_head, heads),
                           nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * ff_mult, bias=False), nn.GELU(),
                                         nn.Linear(dim * ff_mult, dim, bias=False))])
            for _ in range(depth))

    def forward(self, x):
        latents = self.latents.repeat(x.shape[0], 1, 1)
        x = self.proj_in(x)
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm_out(self.proj_out(latents))


def attach_multiview(unet, count: FrameCount, ip: dict | None = None):
    """Give ``unet``'s self-attentions the multi-view processor and, for ImageDream (``ip``: context
    width, token count, weight), its cross-attentions the image-prompt processor. Returns the new
    image-prompt processors by the name of their attention (``down_blocks.0...attn2``)."""
    added = {}
    procs = {}
    for name in unet.attn_processors:  # "...attn1.processor" / "...attn2.processor"
        if name.endswith("attn1.processor"):
            procs[name] = MultiViewAttnProcessor(count)
        elif ip is None:
            procs[name] = unet.attn_processors[name]
        else:
            attn = unet.get_submodule(name[:-len(".processor")])
            p = ImagePromptAttnProcessor(ip["context_dim"], attn.to_k.out_features, ip["tokens"], ip["weight"])
            procs[name] = added[name[:-len(".processor")]] = p
    unet.set_attn_processor(procs)
    return added
