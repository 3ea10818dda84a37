"""The two optimisation stages, importable and testable without any GUI.

    Stage1(cfg).run()   Gaussians from the guidance, then the coarse textured mesh
    Stage2(cfg).run()   the mesh's texture refined with SDEdit-style MSE targets

Outputs (``cfg.outdir``, base name ``cfg.save_path``):
    <name>_model.<splat_format> stage-1 Gaussians (standard 3DGS .ply; or .splat, .compressed.ply, .spz,
                                .sog, .glb: splat_formats.py)
    <name>_mesh.obj|glb (+mtl, _albedo.png)   stage-1 coarse textured mesh
    <name>.obj|glb (+mtl, _albedo.png)        stage-2 refined mesh
    <name>_run.json             resolved config, seed, timings per stage, counts, versions
"""
from __future__ import annotations

import json
import os
import platform
import random
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from cameras import Camera
from mesh import mesh_files

# ------------------------------------------------------------------ utilities


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but CUDA is not available here; use device=auto or device=cpu")
    return torch.device(name)


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def output_paths(cfg) -> dict:
    base = os.path.join(cfg.outdir, cfg.save_path)
    ext = "." + cfg.mesh_format
    splats = "_model." + cfg.splat_format  # .ply (standard 3DGS attributes) or another splat format (splat_formats.py)
    return {"ply": base + splats, "coarse": base + "_mesh" + ext, "fine": base + ext, "run": base + "_run.json",
            "base": base}


def read_run_json(path: str) -> dict:
    try:
        with open(path) as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def digests(paths) -> dict:
    """{file name: sha256} of the files a stage wrote (run.json's record of them)."""
    from outputs import file_digest

    return {os.path.basename(p): file_digest(p) for p in paths if os.path.isfile(p)}


def coarse_candidates(paths: dict) -> list:
    """The stage-1 mesh in the configured format first, then in the other one."""
    base = paths["coarse"].rsplit(".", 1)[0]
    return [paths["coarse"]] + [base + e for e in (".obj", ".glb") if base + e != paths["coarse"]]


def update_run_json(path: str, stage: str, cfg, record: dict):
    """Merge this stage's record into ``<name>_run.json`` (atomically)."""
    data = read_run_json(path)
    from importlib.metadata import PackageNotFoundError, version

    def ver(pkg):
        try:
            return version(pkg)
        except PackageNotFoundError:
            return None
    data["versions"] = {"python": platform.python_version(), "torch": torch.__version__,
                        **{p: ver(p) for p in ("diffusers", "transformers", "gsplat", "xatlas", "PyMCubes")},
                        "platform": platform.platform()}
    data[stage] = {"config": OmegaConf.to_container(cfg, resolve=True), "torch_threads": torch.get_num_threads(),
                   **record}
    from io_utils import save_json

    save_json(path, data)


def progress(iterable, quiet: bool, desc: str):
    if quiet:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, dynamic_ncols=True, file=sys.stderr)


def check_output(cfg):
    """The outputs can be written: ``outdir`` exists or can be made, a ``save_path`` with a folder
    part names an existing folder, and a test file can be written there. Checked before any model
    loads or step runs, so a bad path costs nothing."""
    name = str(cfg.save_path)
    base = os.path.join(cfg.outdir, name)
    folder = os.path.dirname(base) or "."
    if os.path.dirname(name) and not os.path.isdir(folder):
        raise ValueError(f"save_path '{name}' names a folder that does not exist ({folder}); create it or "
                         "use a plain name")
    try:
        os.makedirs(cfg.outdir, exist_ok=True)
        import tempfile

        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write_test_"):
            pass
    except OSError as e:
        raise ValueError(f"output folder {folder} cannot be written ({e.strerror or type(e).__name__}); "
                         "set outdir= to a writable folder") from None


def input_record(cfg, ctx) -> dict:
    """run.json's ``input``: the path and sha256 of what the run was made from (outputs.input_digest)
    and, in image mode, every input view with its own sha256 and angles."""
    from outputs import file_digest, input_digest
    from inputs import input_paths

    paths = input_paths(cfg.input)
    record = {"path": paths[0] if len(paths) == 1 else (paths or cfg.input), "sha256": input_digest(cfg)}
    if ctx.refs:
        record["views"] = [{"path": r.path, "sha256": file_digest(r.path) if os.path.isfile(r.path) else None,
                            "azimuth": r.azimuth, "elevation": r.elevation} for r in ctx.refs]
    return record


def check_common(cfg):
    """Every key's value (config.validate; load_config ran it already for configs read from YAML)."""
    from config import validate

    validate(cfg)


@dataclass
class InputView:
    """One input image of image mode, at its camera."""

    path: str
    azimuth: float  # degrees, relative to the first view, orbit convention
    elevation: float  # degrees
    camera: Camera
    rgb: torch.Tensor  # [3,S,S] in [0,1]
    mask: torch.Tensor  # [1,S,S] in [0,1]

    @property
    def on_white(self) -> torch.Tensor:
        """The view composited on white, as the renders it is compared with."""
        return self.rgb * self.mask + (1 - self.mask)


def check_input_count(cfg):
    """Several input images are image mode's, with a prior that can take them: a one-line error
    otherwise, before anything is read."""
    from inputs import input_paths

    n = len(input_paths(cfg.input))
    if n <= 1:
        return
    if cfg.mode != "image":
        raise ValueError(f"input= lists {n} images, but mode={cfg.mode} reads one input; several views of one "
                         "object are image mode's (mode=image with input_azimuths)")
    if cfg.imagedream and cfg.lambda_sd > 0:
        raise ValueError(f"input= lists {n} images, but ImageDream (imagedream=true) conditions on one; use Zero123 "
                         "(configs/image.yaml) for several views, or give one image")


class Context:
    """What both stages share: device, inputs, guidance, camera sampling."""

    def __init__(self, cfg, log=print, build_guidance=None):
        check_common(cfg)
        check_output(cfg)
        self.cfg = cfg
        self.log = log
        self.device = pick_device(cfg.device)
        seed_everything(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.refs = []  # InputView of every input view (image mode; one unless input= lists several)
        self.elevation = float(cfg.elevation)  # the (first) input view's elevation: novel views orbit around it
        self.views = None
        self.warnings = []  # what reading the input had to guess: logged, and kept in run.json
        check_input_count(cfg)
        if cfg.mode == "image":
            from inputs import input_paths, load_input_views, view_angles

            paths = input_paths(cfg.input)
            angles = view_angles(max(len(paths), 1), cfg.input_azimuths, cfg.input_elevations, cfg.elevation)
            loaded = load_input_views(paths, cfg.ref_size, cfg.recenter, cfg.border_ratio, self.warnings)
            for path, (az, el), (rgb, mask) in zip(paths, angles, loaded):
                cam = Camera.orbit(el, az, cfg.radius, cfg.fovy, cfg.ref_size)
                self.refs.append(InputView(path, az, el, cam, rgb.to(self.device), mask.to(self.device)))
            self.elevation = self.refs[0].elevation
        elif cfg.mode == "recon":
            from posed_views import load_views

            self.views = load_views(cfg.input, cfg, self.device)
            self.warnings = list(self.views.warnings)
        for w in self.warnings:
            self.warn(w)
        self._guidance = None
        self._build_guidance = build_guidance  # (cfg, device, views) -> guidance; None: guidance.build_guidance

    @property
    def ref(self):
        """(camera, rgb [3,S,S], mask [1,S,S]) of the (first) input view (image mode), else None."""
        return (self.refs[0].camera, self.refs[0].rgb, self.refs[0].mask) if self.refs else None

    def warn(self, text: str):
        """``warning: text``: on stderr where the log is the terminal (print), so that a user who
        redirects the output still sees it; else through the caller's log."""
        if self.log is print:
            print(f"warning: {text}", file=sys.stderr, flush=True)
        else:
            self.log(f"warning: {text}")

    @property
    def guidance(self):
        return self.load_guidance()

    def load_guidance(self):
        """Build the guidance once (loading diffusion models is slow), checking the conditioning
        first so that a missing prompt fails before any model loads."""
        if self._guidance is None:
            from guidance import build_guidance

            cond = None
            if self.cfg.mode != "recon":  # check the conditioning before the (slow) model load
                prompt = self.cfg.prompt
                if not prompt and self.cfg.input:
                    from inputs import read_caption

                    prompt = read_caption(self.cfg.input)
                if self.cfg.mode == "text" and not prompt:
                    raise ValueError("text mode needs prompt=\"...\" (or a <name>_caption.txt beside input)")
                cond = {"prompt": prompt, "negative_prompt": self.cfg.negative_prompt,
                        "elevation": self.elevation, "radius": self.cfg.radius}
                if self.ref is not None:
                    cond.update(image=self.ref[1], mask=self.ref[2])
                if len(self.refs) > 1:  # several views: priors that take them condition on each
                    cond["inputs"] = [{"image": r.rgb, "mask": r.mask, "azimuth": r.azimuth, "elevation": r.elevation}
                                      for r in self.refs]
            g = (self._build_guidance or build_guidance)(self.cfg, self.device, self.views)
            if cond is not None:
                g.prepare(**cond)
            for w in g.warnings():  # e.g. a prompt longer than the text encoder reads
                if w not in self.warnings:
                    self.warnings.append(w)
                    self.warn(w)
            self._guidance = g
        return self._guidance

    def sample_views(self, resolution: int):
        """Views for this step, as the guidance asks (random orbits around the input elevation, the
        posed views in recon mode, 4 views per object for multi-view priors), each object with a
        random white/black background."""
        from cameras import OrbitSampler

        cfg = self.cfg
        orbit = OrbitSampler(self.elevation, cfg.min_ver, cfg.max_ver, cfg.radius, cfg.fovy, resolution)
        views = self.guidance.sample_views(cfg.batch_size, self.rng, orbit)
        backgrounds = {}
        for i, v in enumerate(views):
            key = i if v.group is None else ("group", v.group)
            if key not in backgrounds:
                backgrounds[key] = (0.0, 0.0, 0.0) if self.rng.random() < cfg.invert_bg_prob else (1.0, 1.0, 1.0)
            v.background = backgrounds[key]
        return views


def resolution_at(cfg, step_ratio: float) -> int:
    sched, marks = list(cfg.resolution_schedule), list(cfg.resolution_milestones)
    return sched[sum(step_ratio >= m for m in marks)]


# -------------------------------------------------------------------- stage 1
class Stage1:
    """Optimise 3D Gaussians against the guidance, then export the coarse textured mesh."""

    def __init__(self, cfg, log=print, context=None):
        from densification import DensifyStrategy
        from gaussians import GaussianModel, OptimConfig
        from gs_renderer import ALPHA_MIN

        from outputs import check_free

        self.cfg = cfg
        self.log = log
        self.paths = output_paths(cfg)
        check_free([self.paths["ply"], self.paths["run"], self.paths["base"] + ".lock"]
                   + mesh_files(self.paths["coarse"]))
        self.ctx = context or Context(cfg, log)
        self.device = self.ctx.device
        self.run_id = None
        if cfg.load:
            self.model = GaussianModel.load(cfg.load, device=self.device)
            if not bool((self.model.opacities.detach() >= ALPHA_MIN).any()):  # no render would depend on them
                raise ValueError(f"load={cfg.load}: none of its {len(self.model)} Gaussians is visible (every opacity "
                                 f"is below 1/255, the least the renderer draws): nothing to train from")
            if self.ctx.views is not None:  # recon: saved in the input's frame, trained in the normalised one
                self.model = self.ctx.views.gaussians_to_normalised(self.model)
            log(f"resumed {len(self.model)} Gaussians from {cfg.load}")
        else:
            self.model = GaussianModel(cfg.sh_degree, self.device).init_random_blob(
                cfg.num_pts, cfg.init_radius, cfg.init_opacity, seed=cfg.seed, sh_dc=cfg.init_sh_dc)
        self.model.setup_optimizer(OptimConfig.from_config(cfg))
        self.strategy = DensifyStrategy.from_config(cfg)
        self.state = self.strategy.initialize_state(len(self.model), self.device)
        self.step = 0
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.hook = None  # called as hook(self, stats) after every step (e.g. viewer.LiveView)

    def render(self, camera, bg=(1.0, 1.0, 1.0)):
        from gs_renderer import render

        return render(self.model, camera, bg, self.cfg.rasterizer, self.cfg.tile_size, self.cfg.chunk_size)

    def train_step(self) -> dict:
        cfg = self.cfg
        self.step += 1
        step_ratio = min(1.0, self.step / cfg.iters)
        self.model.update_learning_rate(self.step)
        loss = torch.zeros((), device=self.device)
        renders = []  # (render output, width, height) of the novel views: densification statistics
        if self.ctx.refs and (cfg.lambda_rgb or cfg.lambda_mask):  # each input view: RGB and mask losses
            # (not in the densification statistics, as the reference; ImageDream trains without them)
            ramp = step_ratio if cfg.warmup_rgb_loss else 1.0  # both weights ramp in, as the reference
            lambda_rgb = cfg.lambda_rgb
            if len(self.ctx.refs) > 1 and cfg.lambda_zero123 > 0 and step_ratio > cfg.late_rgb_from:
                lambda_rgb = lambda_rgb * cfg.late_rgb_scale  # several views with a prior: the RGB weight lowered
                # late, the prior then shapes what no view shows (BENCHMARKS.md, several input views)
            for ref in self.ctx.refs:  # several views: each its own loss, as the one view has
                out = self.render(ref.camera)
                loss = loss + ramp * (lambda_rgb * F.mse_loss(out["image"], ref.on_white)
                                      + cfg.lambda_mask * F.mse_loss(out["alpha"], ref.mask))
        views = self.ctx.sample_views(resolution_at(cfg, step_ratio))
        images = []
        for v in views:
            out = self.render(v.camera, v.background)
            self.strategy.step_pre_backward(out)
            renders.append((out, v.camera.width, v.camera.height))
            images.append(out["image"])
        loss = loss + self.ctx.guidance.train_step(torch.stack(images), views, step_ratio)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"stage 1 loss became {loss.item()} at step {self.step}")
        loss.backward()
        report = self.strategy.step_post_backward(self.model, self.state, renders, self.step, self.gen)
        self.model.optimizer.step()
        self.model.optimizer.zero_grad(set_to_none=True)
        return {"loss": loss.item(), "gaussians": len(self.model), **report}

    def train(self):
        bar = progress(range(self.cfg.iters), self.cfg.quiet, "stage 1")
        stats = {}
        for _ in bar:
            stats = self.train_step()
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{stats['loss']:.4f}", n=stats["gaussians"])
            if self.hook is not None:
                self.hook(self, stats)
        return stats

    def save_ply(self, path=None):
        """The Gaussians in ``splat_format``; in recon mode in the input's own frame, as the meshes."""
        path = path or self.paths["ply"]
        model = self.model if self.ctx.views is None else self.ctx.views.gaussians_to_source(self.model)
        model.save(path)  # the format by the name's ending (GaussianModel.save)
        return path

    def rescue(self, error):
        """The outputs cannot be written (disk full, no permission): the trained Gaussians go to
        the system temp folder, and the one-line error says where. A finished training is never
        lost."""
        import tempfile

        from io_utils import OutputError

        rescue = os.path.join(tempfile.gettempdir(), f"dreamgaussian_{self.run_id or os.getpid()}_"
                              f"{os.path.basename(self.paths['ply'])}")
        try:
            self.save_ply(rescue)
        except OutputError:
            return OutputError(f"{error}; the trained Gaussians could not be saved anywhere")
        return OutputError(f"{error}; the trained Gaussians are saved to {rescue} instead (continue with "
                           f"load={rescue})")

    def export_mesh(self):
        from mesh_utils import gaussians_to_mesh

        def render_fn(cam):
            with torch.no_grad():
                o = self.render(cam, (1.0, 1.0, 1.0))
            return o["image"].cpu(), o["alpha"].cpu()

        mesh, times, stats = gaussians_to_mesh(self.model, self.cfg, render_fn, log=self.log)
        if self.ctx.views is not None:  # recon: back to the input's own coordinates
            mesh.v = self.ctx.views.to_source(mesh.v)
        mesh.save(self.paths["coarse"])
        return mesh, times, stats

    def run(self) -> dict:
        """Train, then write the Gaussians and the coarse mesh, holding ``<save_path>.lock``.
        run.json's ``stage1`` record carries a run id, the input's hash and the hash of every file
        written, and says ``writing`` while they are replaced, so stage 2 can tell these outputs
        from a mixture."""
        import uuid

        from outputs import RunLock

        with RunLock(self.paths["base"]):
            self.run_id = uuid.uuid4().hex[:12]
            self.provenance = {"run_id": self.run_id, "input": input_record(self.cfg, self.ctx)}
            return self._run()

    def _run(self) -> dict:
        t0 = time.perf_counter()
        self.ctx.load_guidance()  # load the models (and fail on a missing one) before training starts
        timings = {"load_guidance": round(time.perf_counter() - t0, 3)}
        interrupted = False
        try:
            self.train()
        except KeyboardInterrupt:
            interrupted = True
        timings["train"] = round(time.perf_counter() - t0 - timings["load_guidance"], 3)
        pruned = 0
        if not interrupted:
            from densification import final_prune

            pruned = final_prune(self.model, self.cfg.final_prune_min_opacity, self.cfg.final_prune_max_scale)
        self.model.check()
        # from here on the outputs of earlier runs are replaced: run.json says so first
        from io_utils import OutputError

        try:
            update_run_json(self.paths["run"], "stage1", self.cfg, {**self.provenance, "status": "writing"})
            self.save_ply()
        except OutputError as e:
            raise self.rescue(e) from None
        written = [self.paths["ply"]]
        record = {"seed": self.cfg.seed, "steps": self.step, "gaussians": len(self.model), "final_pruned": pruned,
                  "outputs": {"ply": self.paths["ply"]}, "timings": timings, "interrupted": interrupted,
                  "warnings": self.ctx.warnings}
        if not interrupted:
            t1 = time.perf_counter()
            try:
                _, mesh_times, mesh_stats = self.export_mesh()
            except KeyboardInterrupt:  # Ctrl-C during the export: the Gaussians are saved, no mesh is
                interrupted = record["interrupted"] = True
            else:
                timings["mesh_export"] = round(time.perf_counter() - t1, 3)
                timings["mesh_export_stages"] = mesh_times
                record["mesh"] = mesh_stats
                record["outputs"]["mesh"] = self.paths["coarse"]
                written += mesh_files(self.paths["coarse"])
        timings["total"] = round(time.perf_counter() - t0, 3)
        if self.ctx.views is not None:
            record["normalisation"] = {"center": self.ctx.views.center.tolist(), "scale": self.ctx.views.scale}
        record.update(self.provenance, status="interrupted" if interrupted else "finished", files=digests(written))
        update_run_json(self.paths["run"], "stage1", self.cfg, record)
        if interrupted:
            self.log(f"interrupted at step {self.step}: Gaussians saved to {self.paths['ply']}; "
                     f"continue with load={self.paths['ply']}")
            raise KeyboardInterrupt
        return record


# -------------------------------------------------------------------- stage 2
def check_stage1_outputs(cfg, paths: dict, mesh_path: str) -> dict:
    """The coarse mesh stage 2 is about to refine must be the one the last finished stage 1 wrote
    (its hash in run.json), and ``input=`` the input that run used; else one line saying which
    and how to choose on purpose (``mesh=``). Returns that stage-1 record."""
    from io_utils import OutputError
    from outputs import file_digest, input_digest

    anyway = f"or pass mesh={mesh_path} to refine it anyway"
    s1 = read_run_json(paths["run"]).get("stage1")
    if not isinstance(s1, dict) or "run_id" not in s1:
        raise OutputError(f"{paths['run']} has no record of the stage-1 run that wrote {mesh_path}: rerun main.py "
                          f"with this save_path, {anyway}")
    if s1.get("status") != "finished":
        how = {"interrupted": "was interrupted", "writing": "stopped while writing"}.get(s1.get("status"), "did not finish")
        raise OutputError(f"the last stage-1 run for {paths['base']} ({s1['run_id']}) {how} before its mesh was written: "
                          f"{mesh_path} is from an earlier run; rerun main.py, {anyway}")
    recorded = (s1.get("files") or {}).get(os.path.basename(mesh_path))
    if recorded is None or recorded != file_digest(mesh_path):
        raise OutputError(f"{mesh_path} is not the mesh the last stage-1 run ({s1['run_id']}) wrote (it has changed "
                          f"or comes from elsewhere); rerun main.py, {anyway}")
    want = (s1.get("input") or {}).get("sha256")
    if want is not None and input_digest(cfg) != want:
        raise OutputError(f"input={cfg.input} is not the input stage 1 used for {paths['base']} "
                          f"({(s1.get('input') or {}).get('path')}); pass that input=, {anyway}")
    return s1


class Stage2:
    """Refine the coarse mesh's texture (and optionally its vertices) with MSE to SDEdit-style
    targets: render, let the guidance noise and denoise the render, fit to the result."""

    def __init__(self, cfg, log=print, context=None):
        from mesh import Mesh

        self.cfg = cfg
        self.log = log
        self.paths = output_paths(cfg)
        from outputs import check_free

        path = cfg.mesh or next((p for p in coarse_candidates(self.paths) if os.path.isfile(p)), self.paths["coarse"])
        if not os.path.isfile(path):
            if os.path.isdir(path):
                raise ValueError(f"stage-2 input mesh {path} is a folder; pass mesh=FILE.obj or .glb")
            raise FileNotFoundError(f"stage-2 input mesh not found: {path} (run main.py first, or pass mesh=...)")
        check_free(mesh_files(self.paths["fine"]) + [self.paths["run"], self.paths["base"] + ".lock"])
        self.stage1 = None if cfg.mesh else check_stage1_outputs(cfg, self.paths, path)
        self.mesh_path = path
        self.ctx = context or Context(cfg, log)
        self.device = self.ctx.device
        mesh = Mesh.load(path)
        if mesh.vt is None or mesh.albedo is None:
            raise ValueError(f"{path}: stage 2 needs a mesh with UVs and a texture")
        if self.ctx.views is not None:  # recon: into the normalised frame the views live in
            mesh.v = self.ctx.views.to_normalised(mesh.v)
        self.mesh = mesh.to(self.device)
        # the optimised texture: logits (albedo = sigmoid(raw), the reference) or the colours themselves
        tex = self.mesh.albedo.clone()
        self.raw_albedo = (torch.logit(tex.clamp(1e-6, 1 - 1e-6)) if cfg.texture_logits else tex).requires_grad_(True)
        groups = [{"params": [self.raw_albedo], "lr": cfg.texture_lr}]
        self.v_offsets = None
        if cfg.train_geo:
            self.v_offsets = torch.zeros_like(self.mesh.v, requires_grad=True)
            groups.append({"params": [self.v_offsets], "lr": cfg.geom_lr})
        self.optimizer = torch.optim.Adam(groups)
        self.step = 0
        self.hook = None  # called as hook(self, stats) after every step (e.g. viewer.LiveView)

    @property
    def albedo(self):
        return torch.sigmoid(self.raw_albedo) if self.cfg.texture_logits else self.raw_albedo

    def render(self, camera, bg=(1.0, 1.0, 1.0)):
        from mesh_renderer import render_mesh

        return render_mesh(self.mesh, camera, bg, self.cfg.mesh_renderer, self.v_offsets, self.albedo)

    def train_step(self) -> dict:
        cfg = self.cfg
        self.step += 1
        step_ratio = min(1.0, self.step / max(cfg.iters_refine, 1))
        loss = torch.zeros((), device=self.device)
        for ref in self.ctx.refs if cfg.lambda_ref_view else []:  # each input view, where the surface faces it
            out = self.render(ref.camera)
            valid = ((out["alpha"] > 0) & (out["viewcos"][None] > 0.5)).float()
            loss = loss + cfg.lambda_ref_view * F.mse_loss(out["image"] * valid, ref.on_white * valid)
        views = self.ctx.sample_views(cfg.refine_resolution)
        if cfg.refine_white_bg:  # the reference refines on white
            for v in views:
                v.background = (1.0, 1.0, 1.0)
        images = torch.stack([self.render(v.camera, v.background)["image"] for v in views])
        strength = cfg.refine_strength_start + (cfg.refine_strength_end - cfg.refine_strength_start) * step_ratio
        with torch.no_grad():
            targets = self.ctx.guidance.refine(images.detach(), views, strength, cfg.refine_inference_steps)
        loss = loss + cfg.lambda_refine * F.mse_loss(images, targets.to(images))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if not cfg.texture_logits:
            with torch.no_grad():
                self.raw_albedo.clamp_(0, 1)
        return {"loss": loss.item()}

    def export(self):
        from mesh import Mesh

        v = self.mesh.v if self.v_offsets is None else self.mesh.v + self.v_offsets
        v = v.detach()
        if self.ctx.views is not None:
            v = self.ctx.views.to_source(v)
        out = Mesh(v.cpu(), self.mesh.f.cpu(), self.mesh.vt.cpu(), self.albedo.detach().clamp(0, 1).cpu())
        out.save(self.paths["fine"])
        return out

    def run(self) -> dict:
        """Refine and export, holding ``<save_path>.lock`` as stage 1 does."""
        from outputs import RunLock

        with RunLock(self.paths["base"]):
            if self.stage1 is not None:  # stage 1 may have run again since this stage was set up
                check_stage1_outputs(self.cfg, self.paths, self.mesh_path)
            return self._run()

    def _run(self) -> dict:
        import uuid

        t0 = time.perf_counter()
        self.ctx.load_guidance()  # load the models (and fail on a missing one) before refining
        bar = progress(range(self.cfg.iters_refine), self.cfg.quiet, "stage 2")
        interrupted = False
        try:
            for _ in bar:
                stats = self.train_step()
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{stats['loss']:.4f}")
                if self.hook is not None:
                    self.hook(self, stats)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep the texture refined so far
            interrupted = True
        t_train = time.perf_counter() - t0
        out = self.export()
        record = {"seed": self.cfg.seed, "steps": self.step, "faces": int(out.f.shape[0]),
                  "vertices": int(out.v.shape[0]), "outputs": {"mesh": self.paths["fine"]}, "interrupted": interrupted,
                  "warnings": self.ctx.warnings,
                  "timings": {"train": round(t_train, 3), "total": round(time.perf_counter() - t0, 3)},
                  "run_id": uuid.uuid4().hex[:12], "input": input_record(self.cfg, self.ctx),
                  "input_mesh": {"path": self.mesh_path, "chosen": bool(self.cfg.mesh),
                                 "stage1_run_id": None if self.stage1 is None else self.stage1.get("run_id")},
                  "files": digests(mesh_files(self.paths["fine"]))}
        update_run_json(self.paths["run"], "stage2", self.cfg, record)
        if interrupted:
            self.log(f"interrupted at step {self.step}: the textured mesh so far is saved to {self.paths['fine']}; "
                     f"continue with mesh={self.paths['fine']}")
            raise KeyboardInterrupt
        return record
