"""Guidance: the priors (or data) that tell stage 1 and stage 2 what the object should look like.

Every guidance has the same small interface:

    prepare(**conditioning)                        compute conditioning once (image or text embeddings)
    train_step(images, views, step_ratio) -> loss  stage 1 (SDS for diffusion priors); loss.backward()
                                                   sends the gradient into ``images``
    refine(images, views, strength, steps) -> images   stage 2: SDEdit-style targets for an MSE loss
    sample_views(batch, rng, orbit) -> list[View]  cameras it wants rendered (default: ``batch``
                                                   random views of ``orbit``, a cameras.OrbitSampler;
                                                   multi-view priors: 4 views of each object)

``images`` are [B,3,H,W] renders in [0,1]; ``views`` the matching cameras.View list.
"""
from __future__ import annotations


class Guidance:
    def prepare(self, **conditioning):
        return self

    def warn(self, text: str):
        """Something the prior had to guess or drop from the conditioning (the run logs it and
        keeps it in run.json)."""
        notes = self.__dict__.setdefault("_warnings", [])
        if text not in notes:
            notes.append(text)

    def warnings(self) -> list:
        return list(self.__dict__.get("_warnings", []))

    def sample_views(self, batch: int, rng, orbit):
        return [orbit.view(*orbit.draw(rng)) for _ in range(batch)]

    def train_step(self, images, views, step_ratio: float):
        raise NotImplementedError

    def refine(self, images, views, strength: float, steps: int):
        raise NotImplementedError


class ModelNotFoundError(RuntimeError):
    """A guidance model that cannot be loaded (offline, wrong id, wrong folder layout)."""


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
        from guidance.views import ViewGuidance

        return ViewGuidance(views, device)
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


class InputViewOnly(Guidance):
    """Image mode with lambda_zero123=0 and lambda_sd=0: no prior at all, only the input view's RGB
    and mask losses shape the object (an ablation baseline). Novel views get no loss; stage 2's
    targets are the renders themselves."""

    def train_step(self, images, views, step_ratio):
        return images.sum() * 0.0

    def refine(self, images, views, strength, steps):
        return images


class WeightedGuidance(Guidance):
    """A weighted sum of priors (e.g. Zero123 + Stable Diffusion)."""

    def __init__(self, parts):
        self.parts = parts

    def prepare(self, **conditioning):
        for _, g in self.parts:
            g.prepare(**conditioning)
        return self

    def warnings(self) -> list:
        return [w for _, g in self.parts for w in g.warnings()]

    def sample_views(self, batch, rng, orbit):
        """The views of the part with its own sampler (a multi-view prior's groups of 4 serve a
        single-view prior as well), else random orbit views."""
        for _, g in self.parts:
            if type(g).sample_views is not Guidance.sample_views:
                return g.sample_views(batch, rng, orbit)
        return super().sample_views(batch, rng, orbit)

    def train_step(self, images, views, step_ratio):
        return sum(w * g.train_step(images, views, step_ratio) for w, g in self.parts)

    def refine(self, images, views, strength, steps):
        total = sum(w for w, _ in self.parts)
        return sum(w * g.refine(images, views, strength, steps) for w, g in self.parts) / total
