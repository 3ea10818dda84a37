"""The interface every guidance implements, and the error a missing model raises.

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
