"""Guidance: the priors (or data) that tell stage 1 and stage 2 what the object should look like.

The interface is ``guidance.base.Guidance``; ``build_guidance`` picks the implementation a config
asks for: ``zero123.py`` (Zero123 / Stable-Zero123), ``sd.py`` (Stable Diffusion 2.1),
``mvdream.py`` (MVDream / ImageDream), ``recon.py`` (posed views, reconstruction mode).
"""
from __future__ import annotations

from guidance.base import InputViewOnly, WeightedGuidance


def text_prior(cfg):
    """The class of the prior in the Stable Diffusion slot (weight ``lambda_sd``): MVDream or
    ImageDream where the config asks for them (as the reference's ``mvdream`` / ``imagedream``
    switches), Stable Diffusion 2.1 otherwise."""
    if cfg.mvdream and cfg.imagedream:
        raise ValueError("mvdream=true and imagedream=true: choose one multi-view prior")
    if cfg.imagedream:
        if cfg.mode != "image":
            raise ValueError("imagedream=true needs mode=image (and input=...); for text use mvdream=true")
        from guidance.mvdream import ImageDreamGuidance

        return ImageDreamGuidance
    if cfg.mvdream:
        from guidance.mvdream import MVDreamGuidance

        return MVDreamGuidance
    from guidance.sd import StableDiffusionGuidance

    return StableDiffusionGuidance


def build_guidance(cfg, device, views=None):
    """The guidance of ``cfg.mode``: ``recon`` -> posed views; ``image`` -> Zero123 (optionally
    with the text prior when lambda_sd > 0; ImageDream with imagedream=true); ``text`` -> Stable
    Diffusion (MVDream with mvdream=true)."""
    if cfg.mode == "recon":
        from guidance.recon import ReconGuidance

        return ReconGuidance(views, device)
    if cfg.imagedream and cfg.lambda_sd <= 0:
        raise ValueError("imagedream=true weighs ImageDream with lambda_sd, which is 0; set lambda_sd=1 "
                         "(as configs/imagedream.yaml)")
    prior = text_prior(cfg) if cfg.mode == "text" or cfg.lambda_sd > 0 else None  # checked before any load
    parts = []
    if cfg.mode == "image" and cfg.lambda_zero123 > 0:
        from guidance.zero123 import Zero123Guidance

        parts.append((cfg.lambda_zero123, Zero123Guidance.from_config(cfg, device)))
    if prior is not None:
        parts.append((cfg.lambda_sd if cfg.mode == "image" else max(cfg.lambda_sd, 1.0),
                      prior.from_config(cfg, device)))
    if not parts:
        if cfg.mode == "image":  # the input view alone: the no-prior baseline of scripts/bench_toy.py
            return InputViewOnly()
        raise ValueError(f"mode '{cfg.mode}' with lambda_zero123=0 and lambda_sd=0 has no guidance")
    return parts[0][1] if len(parts) == 1 and parts[0][0] == 1.0 else WeightedGuidance(parts)
