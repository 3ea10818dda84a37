"""Adaptive density control of 3D Gaussians, as a strategy object with explicit state.

    strategy = DensifyStrategy.from_config(cfg)
    state = strategy.initialize_state(len(model))
    for step in range(1, iters + 1):
        out = render(model, camera)
        strategy.step_pre_backward(out)                       # keep the screen-space gradient
        loss.backward()
        strategy.step_post_backward(model, state, [(out, W, H)], step)  # may clone/split/prune/reset
        model.optimizer.step(); model.optimizer.zero_grad()

The low-level operations below edit every parameter and Adam's moments in one place
(``GaussianModel.update_points``): kept points keep their moments, new points start with zero
moments, removed points take theirs with them.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from gaussians import PARAM_NAMES, GaussianModel, inverse_sigmoid
from gs_renderer import quat_to_rotmat


# ------------------------------------------------------------------------- ops
def duplicate(model: GaussianModel, mask: torch.Tensor):
    """Append an exact copy of every selected Gaussian."""
    model.update_points(new={k: model.params[k].detach()[mask] for k in PARAM_NAMES})


def split(model: GaussianModel, mask: torch.Tensor, n: int = 2, scale_div: float = 1.6, generator=None):
    """Replace every selected Gaussian by ``n`` Gaussians whose centres are sampled from it and
    whose scales are divided by ``scale_div``; everything else is copied."""
    p = {k: model.params[k].detach()[mask] for k in PARAM_NAMES}
    scales = torch.exp(p["scales"])
    rot = quat_to_rotmat(torch.nn.functional.normalize(p["quats"], dim=-1))
    noise = torch.randn((n,) + scales.shape, generator=generator).to(scales)
    offsets = torch.einsum("mij,nmj->nmi", rot, noise * scales)  # samples from N(0, R S^2 R^T)
    new = {k: v.repeat((n,) + (1,) * (v.dim() - 1)) for k, v in p.items()}
    new["means"] = (p["means"][None] + offsets).reshape(-1, 3)
    new["scales"] = torch.log(scales / scale_div).repeat(n, 1)
    model.update_points(keep=~mask, new=new)


def remove(model: GaussianModel, mask: torch.Tensor):
    """Delete the selected Gaussians."""
    model.update_points(keep=~mask)


def reset_opacity(model: GaussianModel, value: float):
    """Clamp every opacity to at most ``value`` and zero the opacity moments (3DGS reset)."""
    op = torch.clamp(model.opacities.detach(), max=value)
    model.set_param("opacities", inverse_sigmoid(op))


def final_prune(model: GaussianModel, min_opacity: float, max_scale: float) -> int:
    """The reference's last prune before saving: drop Gaussians with opacity below ``min_opacity``
    or largest scale above ``max_scale`` (either test off at 0). Never empties the model.
    Returns how many went."""
    with torch.no_grad():
        drop = torch.zeros(len(model), dtype=torch.bool, device=model.means.device)
        if min_opacity > 0:
            drop |= model.opacities < min_opacity
        if max_scale > 0:
            drop |= model.scales.max(dim=1).values > max_scale
        if drop.all():
            return 0
        remove(model, drop)
    return int(drop.sum())


# -------------------------------------------------------------------- strategy
@dataclass
class DensifyStrategy:
    """Clone / split / prune / opacity reset, as in 3DGS and DreamGaussian.

    Gradients are the norm of the screen-space mean gradient in NDC units (pixel gradient times
    half the image size), averaged over the steps in which a Gaussian was visible, so thresholds
    match the reference implementations'.
    """

    density_start_iter: int = 100  # first step that accumulates statistics / densifies
    density_end_iter: int = 3000  # last such step
    densification_interval: int = 100  # densify and prune every this many steps
    opacity_reset_interval: int = 700  # reset opacities every this many steps (0 = never)
    densify_grad_threshold: float = 0.01  # mean NDC gradient norm above which a Gaussian densifies
    percent_dense: float = 0.01  # clone if max scale <= percent_dense * extent, else split
    extent: float = 4.0  # scene extent (world units) for the size thresholds
    min_opacity: float = 0.01  # prune below this opacity
    max_screen_size: float = 0.0  # prune if the max 2D radius (pixels) exceeded this; 0 = off
    max_world_size: float = 0.1  # prune if max scale > max_world_size * extent; 0 = off
    split_samples: int = 2  # Gaussians a split produces
    split_scale_div: float = 1.6  # scale divisor of split Gaussians (0.8 * split_samples)
    reset_opacity_value: float = 0.01  # opacity ceiling after a reset

    @classmethod
    def from_config(cls, cfg) -> "DensifyStrategy":
        return cls(**{f.name: cfg[f.name] for f in fields(cls) if f.name in cfg})

    def initialize_state(self, n: int, device="cpu") -> dict:
        return {"grad2d": torch.zeros(n, device=device), "count": torch.zeros(n, device=device),
                "max_radii": torch.zeros(n, device=device)}

    def step_pre_backward(self, info: dict):
        """Ask autograd to keep the gradient of the screen-space means."""
        if info["means2d"].requires_grad:
            info["means2d"].retain_grad()

    @torch.no_grad()
    def update_state(self, state: dict, info: dict, width: int, height: int):
        """Accumulate gradient norms and max radii of the Gaussians visible in this render."""
        grad = info["means2d"].grad
        if grad is None:
            return
        grad = grad.reshape(-1, grad.shape[-1])[:, :2].clone()  # inria: [N,3], its third column unused
        if not info.get("means2d_ndc", False):  # pixel gradients -> NDC units
            grad[:, 0] *= width / 2.0
            grad[:, 1] *= height / 2.0
        vis = info["visibility"].reshape(-1)
        state["grad2d"][vis] += grad[vis].norm(dim=-1)
        state["count"][vis] += 1
        radii = info["radii"].reshape(-1).float()
        state["max_radii"][vis] = torch.maximum(state["max_radii"][vis], radii[vis])

    @torch.no_grad()
    def step_post_backward(self, model: GaussianModel, state: dict, renders, step: int, generator=None) -> dict:
        """Feed one optimisation step; ``renders`` lists (render output, width, height) of every
        image rendered in it. Returns counts of what was done at this step."""
        report = {"cloned": 0, "split": 0, "pruned": 0, "reset": False}
        if self.density_start_iter <= step <= self.density_end_iter:
            for info, width, height in renders:
                self.update_state(state, info, width, height)
            if step % self.densification_interval == 0:
                report.update(self.densify_and_prune(model, state, generator))
            if self.opacity_reset_interval > 0 and step % self.opacity_reset_interval == 0:
                reset_opacity(model, self.reset_opacity_value)
                report["reset"] = True
        return report

    @torch.no_grad()
    def densify_and_prune(self, model: GaussianModel, state: dict, generator=None) -> dict:
        n0 = len(model)
        grads = state["grad2d"] / state["count"].clamp_min(1)
        high = grads >= self.densify_grad_threshold
        max_scale = model.scales.max(dim=1).values
        small = max_scale <= self.percent_dense * self.extent
        clone_mask, split_mask = high & small, high & ~small
        duplicate(model, clone_mask)  # clones are appended after the n0 originals
        n_clone = int(clone_mask.sum())
        split_mask = torch.cat([split_mask, torch.zeros(n_clone, dtype=torch.bool, device=split_mask.device)])
        split(model, split_mask, self.split_samples, self.split_scale_div, generator)
        n_split = int(split_mask.sum())
        # screen radii of kept originals and clones; split children and their parents start at 0
        radii = torch.cat([state["max_radii"], state["max_radii"][clone_mask]])[~split_mask]
        radii = torch.cat([radii, radii.new_zeros(n_split * self.split_samples)])
        prune = model.opacities < self.min_opacity
        if self.max_screen_size > 0:
            prune |= radii > self.max_screen_size
        if self.max_world_size > 0:
            prune |= model.scales.max(dim=1).values > self.max_world_size * self.extent
        n_prune = int(prune.sum())
        if n_prune == len(model):
            prune[:] = False  # never prune every point: that would end training with nothing
            n_prune = 0
        remove(model, prune)
        dev = state["grad2d"].device
        state.update(self.initialize_state(len(model), dev))
        return {"cloned": n_clone, "split": n_split, "pruned": n_prune, "before": n0, "after": len(model)}
