"""3D Gaussians: raw parameters, activations, initialisation, optimiser and .ply I/O.

Parameters are stored un-activated, as in the 3DGS reference and its .ply layout:
  means     [N, 3]   world positions
  scales    [N, 3]   log of the standard deviations
  quats     [N, 4]   unnormalised rotation quaternions (w, x, y, z)
  opacities [N]      logits of the opacity
  sh0       [N, 1, 3] degree-0 SH coefficients (colour = SH_C0 * sh0 + 0.5)
  shN       [N, (d+1)^2 - 1, 3] higher-order SH coefficients
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from io_utils import atomic_write, bytes_writer, require_file

SH_C0 = 0.28209479177387814
PARAM_NAMES = ("means", "scales", "quats", "opacities", "sh0", "shN")


class PlyFormatError(ValueError):
    """A .ply file that is not a 3D Gaussian splatting point cloud."""


def rgb_to_sh(rgb):
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(sh):
    return sh * SH_C0 + 0.5


def inverse_sigmoid(x):
    return torch.log(x / (1 - x))


def knn_mean_sq_dist(points: torch.Tensor, k: int = 3, chunk: int = 2048) -> torch.Tensor:
    """Mean squared distance of each point to its ``k`` nearest neighbours (pure PyTorch, chunked)."""
    n = points.shape[0]
    if n <= 1:
        return torch.ones(n, dtype=points.dtype, device=points.device)
    k = min(k, n - 1)
    out = []
    for s in range(0, n, chunk):
        d2 = torch.cdist(points[s:s + chunk], points).square()
        d2[torch.arange(d2.shape[0]), torch.arange(s, s + d2.shape[0])] = float("inf")  # not itself
        out.append(d2.topk(k, dim=1, largest=False).values.mean(1))
    return torch.cat(out)


def exponential_lr(step, lr_init, lr_final, delay_steps=0, delay_mult=1.0, max_steps=1_000_000):
    """The 3DGS position learning-rate schedule: log-linear from lr_init to lr_final over
    max_steps, optionally damped by a sine-eased delay for the first delay_steps."""
    if step < 0 or (lr_init == 0.0 and lr_final == 0.0):
        return 0.0
    if delay_steps > 0:
        delay_rate = delay_mult + (1 - delay_mult) * math.sin(0.5 * math.pi * min(max(step / delay_steps, 0), 1))
    else:
        delay_rate = 1.0
    t = min(max(step / max_steps, 0.0), 1.0)
    return delay_rate * math.exp(math.log(lr_init) * (1 - t) + math.log(lr_final) * t)


@dataclass
class OptimConfig:
    """Per-parameter learning rates (the reference's defaults)."""

    position_lr_init: float = 0.001  # start of the exponential position LR schedule
    position_lr_final: float = 0.00002  # end of the schedule
    position_lr_delay_mult: float = 0.02  # LR multiplier at step 0 of the delay warm-up
    position_lr_max_steps: int = 500  # steps over which the position LR decays
    scaling_lr: float = 0.005
    rotation_lr: float = 0.005
    opacity_lr: float = 0.05
    feature_lr: float = 0.01  # DC colour; higher SH bands use feature_lr / 20
    position_lr_scale: float = 1.0  # multiplies both position LRs (the reference's spatial_lr_scale: 10)

    @classmethod
    def from_config(cls, cfg) -> "OptimConfig":
        return cls(**{k: cfg[k] for k in cls.__dataclass_fields__ if k in cfg})


class GaussianModel:
    """A set of 3D Gaussians with spherical-harmonics colour.

    ``params`` is a dict of leaf tensors (names in PARAM_NAMES); densification replaces
    them through ``replace_params`` so that the optimiser stays in sync.
    """

    def __init__(self, sh_degree: int = 0, device="cpu"):
        if not 0 <= sh_degree <= 3:
            raise ValueError(f"sh_degree must be in 0..3, got {sh_degree}")
        self.sh_degree = sh_degree
        self.device = torch.device(device)
        n_rest = (sh_degree + 1) ** 2 - 1
        self.params = {
            "means": torch.empty(0, 3), "scales": torch.empty(0, 3), "quats": torch.empty(0, 4),
            "opacities": torch.empty(0), "sh0": torch.empty(0, 1, 3), "shN": torch.empty(0, n_rest, 3),
        }
        self.params = {k: v.to(self.device).requires_grad_(True) for k, v in self.params.items()}
        self.optimizer: torch.optim.Optimizer | None = None
        self.optim_cfg: OptimConfig | None = None

    # ----------------------------------------------------------------- creation
    def set_params(self, dtype=torch.float32, **tensors):
        for k in PARAM_NAMES:
            v = tensors[k].detach().to(self.device, dtype).contiguous()
            self.params[k] = v.requires_grad_(True)
        self.check()
        return self

    def init_random_blob(self, num_pts: int, radius: float = 0.5, opacity: float = 0.1, seed=None,
                         sh_dc: float = 1 / 255):
        """``num_pts`` points uniformly inside a ball, SH DC coefficients uniform in [0, sh_dc]
        (the reference's 1/255: colours within 0.0011 of grey), isotropic scales from the mean
        distance to the 3 nearest neighbours (the reference's initialisation)."""
        if num_pts <= 0:
            raise ValueError(f"num_pts must be positive, got {num_pts}")
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        # uniform in a ball: direction from a normal, radius from u^(1/3)
        d = torch.randn(num_pts, 3, generator=g)
        d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)
        r = radius * torch.rand(num_pts, 1, generator=g) ** (1 / 3)
        means = d * r
        sh0 = torch.rand(num_pts, 3, generator=g) * sh_dc
        dist2 = knn_mean_sq_dist(means).clamp_min(1e-7)
        scales = torch.log(torch.sqrt(dist2))[:, None].repeat(1, 3)
        quats = torch.zeros(num_pts, 4)
        quats[:, 0] = 1
        return self.set_params(
            means=means, scales=scales, quats=quats,
            opacities=inverse_sigmoid(torch.full((num_pts,), opacity)),
            sh0=sh0[:, None, :],
            shN=torch.zeros(num_pts, (self.sh_degree + 1) ** 2 - 1, 3))

    def transformed(self, scale: float, offset) -> "GaussianModel":
        """A copy moved into another frame: positions ``x * scale + offset``, every axis of every
        Gaussian ``scale`` times as long (log-scales shifted by log(scale)); rotations and colours
        unchanged (a uniform scale and a translation leave them be)."""
        off = torch.as_tensor(np.asarray(offset, np.float32), device=self.device)
        p = {k: v.detach().clone() for k, v in self.params.items()}
        p["means"] = p["means"] * scale + off
        p["scales"] = p["scales"] + math.log(scale)
        return GaussianModel(self.sh_degree, self.device).set_params(dtype=p["means"].dtype, **p)

    def check(self):
        """Raise a one-line ValueError on inconsistent shapes or non-finite values."""
        n = self.params["means"].shape[0]
        for k, v in self.params.items():
            if v.shape[0] != n:
                raise ValueError(f"Gaussian parameter '{k}' has {v.shape[0]} rows, expected {n}")
            if not torch.isfinite(v).all():
                raise ValueError(f"Gaussian parameter '{k}' contains NaN or inf values")

    # -------------------------------------------------------------- activations
    def __len__(self):
        return self.params["means"].shape[0]

    @property
    def means(self):
        return self.params["means"]

    @property
    def scales(self):
        return torch.exp(self.params["scales"])

    @property
    def quats(self):
        return torch.nn.functional.normalize(self.params["quats"], dim=-1)

    @property
    def opacities(self):
        return torch.sigmoid(self.params["opacities"])

    @property
    def shs(self):
        return torch.cat([self.params["sh0"], self.params["shN"]], dim=1)

    # ---------------------------------------------------------------- optimiser
    def setup_optimizer(self, cfg: OptimConfig | None = None):
        cfg = cfg or OptimConfig()
        self.optim_cfg = cfg
        lrs = {"means": cfg.position_lr_init * cfg.position_lr_scale, "scales": cfg.scaling_lr,
               "quats": cfg.rotation_lr, "opacities": cfg.opacity_lr, "sh0": cfg.feature_lr,
               "shN": cfg.feature_lr / 20.0}
        self.optimizer = torch.optim.Adam(
            [{"params": [self.params[k]], "lr": lrs[k], "name": k} for k in PARAM_NAMES], lr=0.0, eps=1e-15)
        return self.optimizer

    def update_learning_rate(self, step: int) -> float:
        """Apply the exponential position-LR schedule for ``step``; returns the new LR."""
        cfg = self.optim_cfg
        lr = exponential_lr(step, cfg.position_lr_init * cfg.position_lr_scale,
                            cfg.position_lr_final * cfg.position_lr_scale,
                            delay_mult=cfg.position_lr_delay_mult, max_steps=cfg.position_lr_max_steps)
        for group in self.optimizer.param_groups:
            if group["name"] == "means":
                group["lr"] = lr
        return lr

    def _swap(self, name, new, state_fn):
        """Install ``new`` as parameter ``name``, mapping Adam's moments through ``state_fn``."""
        old = self.params[name]
        new = new.detach().contiguous().requires_grad_(True)
        self.params[name] = new
        if self.optimizer is None:
            return
        for group in self.optimizer.param_groups:
            if group["params"][0] is old:
                group["params"][0] = new
                state = self.optimizer.state.pop(old, None)
                if state:
                    for key in ("exp_avg", "exp_avg_sq"):
                        state[key] = state_fn(state[key])
                    self.optimizer.state[new] = state

    def update_points(self, keep: torch.Tensor | None = None, new: dict | None = None):
        """Keep the rows ``keep`` (bool mask or indices; None keeps all) and append ``new``
        (a dict of raw parameter rows, one entry per name). Kept rows keep their Adam moments,
        appended rows start with zero moments."""
        n_new = 0 if new is None else new["means"].shape[0]

        def moments(t):  # Adam moments: kept rows, then zeros for the new rows
            t = t if keep is None else t[keep]
            return torch.cat([t, t.new_zeros((n_new,) + t.shape[1:])]) if n_new else t

        for k in PARAM_NAMES:
            param = self.params[k].detach()
            param = param if keep is None else param[keep]
            if n_new:
                param = torch.cat([param, new[k].detach().to(param)])
            self._swap(k, param, moments)

    def set_param(self, name: str, value: torch.Tensor):
        """Overwrite one parameter's values and zero its Adam moments (e.g. opacity reset)."""
        self._swap(name, value, torch.zeros_like)

    # ---------------------------------------------------------------------- ply
    def _ply_attributes(self):
        n_rest = 3 * ((self.sh_degree + 1) ** 2 - 1)
        return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                + [f"f_rest_{i}" for i in range(n_rest)]
                + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])

    def save_ply(self, path: str):
        """Write the standard 3DGS .ply (raw, un-activated values; f_rest channel-major)."""
        from plyfile import PlyData, PlyElement

        p = {k: v.detach().cpu().float().numpy() for k, v in self.params.items()}
        n = p["means"].shape[0]
        f_rest = p["shN"].transpose(0, 2, 1).reshape(n, -1)  # [N, 3, K-1] flattened, as 3DGS
        cols = [p["means"], np.zeros((n, 3), np.float32), p["sh0"].reshape(n, 3), f_rest,
                p["opacities"][:, None], p["scales"], p["quats"]]
        data = np.concatenate(cols, axis=1)
        names = self._ply_attributes()
        arr = np.empty(n, dtype=[(a, "f4") for a in names])
        for i, a in enumerate(names):
            arr[a] = data[:, i]
        atomic_write(path, lambda tmp: PlyData([PlyElement.describe(arr, "vertex")]).write(tmp))

    @classmethod
    def load_ply(cls, path: str, device="cpu") -> "GaussianModel":
        from plyfile import PlyData

        require_file(path, "Gaussian .ply")
        try:
            ply = PlyData.read(path)
        except Exception as e:  # plyfile raises several exception types
            raise PlyFormatError(f"{path}: not a readable .ply file ({e})") from None
        if "vertex" not in [el.name for el in ply.elements]:
            raise PlyFormatError(f"{path}: .ply has no 'vertex' element")
        v = ply["vertex"]
        names = set(v.data.dtype.names)
        required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                    "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
        missing = [a for a in required if a not in names]
        if missing:
            raise PlyFormatError(f"{path}: not a 3D Gaussian splatting .ply (missing {', '.join(missing)})")
        n_rest = len([a for a in names if a.startswith("f_rest_")])
        deg = {0: 0, 9: 1, 24: 2, 45: 3}.get(n_rest)
        if deg is None:
            raise PlyFormatError(f"{path}: {n_rest} f_rest_* attributes match no SH degree 0..3")
        if len(v.data) == 0:
            raise PlyFormatError(f"{path}: the .ply is empty (0 Gaussians)")
        col = lambda a: np.asarray(v[a], dtype=np.float32)  # noqa: E731
        stack = lambda attrs: np.stack([col(a) for a in attrs], axis=1)  # noqa: E731
        n = len(v.data)
        f_rest = stack([f"f_rest_{i}" for i in range(n_rest)]) if n_rest else np.zeros((n, 0), np.float32)
        model = cls(sh_degree=deg, device=device)
        t = torch.from_numpy
        return model.set_params(
            means=t(stack(["x", "y", "z"])), scales=t(stack(["scale_0", "scale_1", "scale_2"])),
            quats=t(stack(["rot_0", "rot_1", "rot_2", "rot_3"])), opacities=t(col("opacity")),
            sh0=t(stack(["f_dc_0", "f_dc_1", "f_dc_2"]))[:, None, :],
            shN=t(f_rest.reshape(n, 3, -1).transpose(0, 2, 1).copy()))

    # -------------------------------------------------------------------- splat
    # The web viewers' .splat (antimatter15/splat and those that read it): 32 bytes per Gaussian,
    # little-endian: position 3 x float32, scale 3 x float32 (activated: exp of the log scale),
    # RGBA 4 x uint8 (colour = 0.5 + SH_C0 * f_dc, alpha = sigmoid(opacity)), rotation 4 x uint8
    # (unit wxyz quaternion q as q * 128 + 128), sorted by size x opacity, largest first. Only the
    # SH DC term survives; colours and opacities are quantised to 1/255, rotations to 1/128.
    SPLAT_DTYPE = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])

    def splat_bytes(self) -> bytes:
        p = {k: v.detach().cpu().float().numpy() for k, v in self.params.items()}
        n = p["means"].shape[0]
        order = np.argsort(-np.exp(p["scales"].sum(1)) / (1 + np.exp(-p["opacities"])), kind="stable")
        rgb = sh_to_rgb(p["sh0"].reshape(n, 3))
        alpha = 1 / (1 + np.exp(-p["opacities"]))
        q = p["quats"] / np.linalg.norm(p["quats"], axis=1, keepdims=True).clip(1e-12)
        out = np.empty(n, self.SPLAT_DTYPE)
        out["position"], out["scale"] = p["means"], np.exp(p["scales"])
        out["rgba"] = np.clip(np.round(np.concatenate([rgb, alpha[:, None]], 1) * 255), 0, 255)
        out["rot"] = np.clip(np.round(q * 128 + 128), 0, 255)
        return out[order].tobytes()

    def save_splat(self, path: str):
        data = self.splat_bytes()
        atomic_write(path, bytes_writer(data))

    @classmethod
    def load_splat(cls, path: str, device="cpu") -> "GaussianModel":
        """Read a .splat (degree-0 SH; opacities of 0 or 255 are clamped to finite logits)."""
        require_file(path, "Gaussian .splat")
        size = os.path.getsize(path)
        if size == 0 or size % cls.SPLAT_DTYPE.itemsize:
            raise PlyFormatError(f"{path}: a .splat holds 32 bytes per Gaussian; {size} bytes is not that")
        a = np.fromfile(path, cls.SPLAT_DTYPE)
        if not (np.isfinite(a["position"]).all() and np.isfinite(a["scale"]).all()) or (a["scale"] <= 0).any():
            raise PlyFormatError(f"{path}: non-finite positions or non-positive scales")
        rgba = a["rgba"].astype(np.float32) / 255
        alpha = np.clip(rgba[:, 3], 0.5 / 255, 1 - 0.5 / 255)
        q = (a["rot"].astype(np.float32) - 128) / 128
        q[np.linalg.norm(q, axis=1) < 1e-6] = (1, 0, 0, 0)
        t = torch.from_numpy
        return cls(0, device).set_params(
            means=t(a["position"].copy()), scales=t(np.log(a["scale"])), quats=t(q),
            opacities=t(np.log(alpha / (1 - alpha))), sh0=t(rgb_to_sh(rgba[:, :3])[:, None, :].copy()),
            shN=torch.zeros(len(a), 0, 3))

    # ------------------------------------------------------- other tools' formats
    @classmethod
    def from_arrays(cls, a: dict, device="cpu") -> "GaussianModel":
        """From splat_formats' dict of numpy arrays (raw 3DGS parameters)."""
        t = lambda k: torch.from_numpy(np.ascontiguousarray(a[k], dtype=np.float32))  # noqa: E731
        return cls(int(a["sh_degree"]), device).set_params(means=t("means"), scales=t("scales"), quats=t("quats"),
                                                           opacities=t("opacities"), sh0=t("sh0"), shN=t("shN"))

    def arrays(self) -> dict:
        """The raw parameters as splat_formats' dict of numpy arrays."""
        out = {k: v.detach().cpu().float().numpy() for k, v in self.params.items()}
        out["sh_degree"] = self.sh_degree
        return out

    @classmethod
    def load(cls, path: str, device="cpu") -> "GaussianModel":
        """A .ply (the standard 3DGS layout, or PlayCanvas's compressed one, told apart by its
        content), a .splat, a Niantic .spz, a PlayCanvas .sog bundle or a glTF .glb with a
        KHR_gaussian_splatting primitive (these three also told by their content)."""
        import splat_formats as sf

        fmt = sf.format_of(path)
        if fmt == "splat":
            return cls.load_splat(path, device=device)
        require_file(path, f"Gaussian .{fmt}")
        if fmt == "ply":
            return cls.load_ply(path, device=device)
        read = {"compressed.ply": sf.read_compressed_ply, "spz": sf.read_spz, "sog": sf.read_sog,
                "glb": sf.read_gaussian_glb}[fmt]
        return cls.from_arrays(read(path), device)

    def save(self, path: str):
        """Write by the file name's ending (splat_formats.GAUSSIAN_EXTENSIONS: .compressed.ply, .ply
        (standard 3DGS), .splat, .spz, .sog, .glb with KHR_gaussian_splatting); any other ending is a
        one-line ValueError (never a file in another format under that name)."""
        import splat_formats as sf

        ext = next((e for e in sf.GAUSSIAN_EXTENSIONS if path.lower().endswith(e)), None)
        if ext is None:
            raise ValueError(f"{path}: cannot write Gaussians as '{os.path.splitext(path)[1] or path}'; "
                             f"writable: {', '.join(sf.GAUSSIAN_EXTENSIONS)}")
        if ext == ".ply":
            return self.save_ply(path)
        if ext == ".splat":
            return self.save_splat(path)
        write = {".compressed.ply": sf.write_compressed_ply, ".spz": sf.write_spz, ".sog": sf.write_sog,
                 ".glb": sf.write_gaussian_glb}[ext]
        write(self.arrays(), path)


# ------------------------------------------------------------------ analytic scenes
def gaussians_at(means, scale=0.03, opacity=0.9):
    """Isotropic grey Gaussians of one size and opacity at ``means`` [N, 3]."""
    n = means.shape[0]
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    return GaussianModel(0).set_params(
        means=means, scales=torch.full((n, 3), math.log(scale)), quats=quats,
        opacities=torch.full((n,), float(inverse_sigmoid(torch.tensor(opacity)))),
        sh0=rgb_to_sh(torch.full((n, 3), 0.7))[:, None], shN=torch.zeros(n, 0, 3))


def sphere_of_gaussians(n=2000, radius=0.5, scale=0.03, opacity=0.9, seed=0):
    """Isotropic Gaussians on a sphere surface (an analytic shape)."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g)
    return gaussians_at(radius * d / d.norm(dim=1, keepdim=True), scale, opacity)
