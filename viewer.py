"""Browser views (viser): a live view of training, and a viewer of finished outputs.

The trainer knows nothing of this module. ``LiveView`` is a hook the stage calls once per step
(``trainer.hook = LiveView(...)``); it renders the current Gaussians (stage 1) or textured mesh
(stage 2) with the trainer's own renderer, from each connected browser's camera, at that
browser's resolution (capped at ``max_resolution``), and sends the image as the scene's
background. Rendering is throttled so that it takes at most ``budget`` of the wall time; with no
browser connected a step costs one dictionary lookup. Buttons act between steps, in the training
thread: pause / resume, save the Gaussians now, export the mesh now.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time

import numpy as np
import torch


class ViewerError(ValueError):
    """A viewer problem the user can fix (port in use, missing package)."""


def import_viser():
    try:
        import viser
    except ImportError:
        raise ViewerError("the browser viewer needs viser: pip install viser") from None
    return viser


def check_port(host: str, port: int):
    """Refuse a port that something else holds (viser would quietly move to another one)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise ViewerError(f"gui port {port} on {host} is not free ({e.strerror}); pick another with "
                              f"gui_port=") from None


def client_camera(cam, max_resolution: int):
    """Our camera (OpenGL c2w) for a viser client camera (OpenCV orientation: +z forward, +y down)
    at the client's canvas size, scaled so that its longer side is at most ``max_resolution``."""
    from cameras import Camera

    w, h = max(1, int(cam.image_width or 512)), max(1, int(cam.image_height or 512))
    s = min(1.0, max_resolution / max(w, h))
    c2w = np.eye(4)
    from gs_renderer import quat_to_rotmat

    c2w[:3, :3] = quat_to_rotmat(torch.as_tensor(cam.wxyz, dtype=torch.float64)).numpy() @ np.diag([1.0, -1.0, -1.0])
    c2w[:3, 3] = cam.position
    return Camera(c2w, float(cam.fov), max(8, round(w * s)), max(8, round(h * s)))


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """[3,H,W] in [0,1] -> [H,W,3] uint8."""
    return (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


class LiveView:
    """The live view of a training stage (see the module docstring)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, max_resolution: int = 512, budget: float = 0.2,
                 log=print):
        viser = import_viser()
        check_port(host, port)
        self.server = viser.ViserServer(host, port, verbose=False)
        self.server.scene.set_up_direction("+y")
        self.url = f"http://{host}:{port}"
        self.max_resolution, self.budget, self.log = max_resolution, budget, log
        self.paused = False
        self.requests = set()  # "save" / "export", served between steps
        self.lock = threading.Lock()
        self.next_render = 0.0
        self.t0 = time.perf_counter()
        self.renders = 0
        self.render_seconds = 0.0
        self.trainer = None
        self.reference_time, self.reference_interval = -1e9, 5.0  # the panel's input | render pair: every 5 s
        gui = self.server.gui
        self.status = gui.add_markdown("waiting for the first step")
        self.reference = None
        self.pause_button = gui.add_button("Pause")
        self.resume_button = gui.add_button("Resume", visible=False)
        self.save_button = gui.add_button("Save Gaussians now")
        self.export_button = gui.add_button("Export mesh now")
        self.pause_button.on_click(lambda _: self._set_paused(True))
        self.resume_button.on_click(lambda _: self._set_paused(False))
        self.save_button.on_click(lambda _: self._request("save"))
        self.export_button.on_click(lambda _: self._request("export"))
        self.server.on_client_connect(self._on_connect)
        log(f"live view: {self.url}")

    # ------------------------------------------------------------ browser side (viser threads)
    def _set_paused(self, paused: bool):
        self.paused = paused
        self.pause_button.visible, self.resume_button.visible = not paused, paused
        self.next_render = 0.0

    def _request(self, what: str):
        with self.lock:
            self.requests.add(what)

    def _on_connect(self, client):
        trainer = self.trainer
        if trainer is None:
            return
        cam = reference_camera(trainer)
        if cam is not None:  # start where the input view is
            client.camera.position = tuple(cam.c2w[:3, 3])
            client.camera.look_at = (0.0, 0.0, 0.0)
            client.camera.up_direction = (0.0, 1.0, 0.0)
        client.camera.on_update(lambda _: setattr(self, "next_render", 0.0) if self.paused else None)
        self.next_render = 0.0

    # ------------------------------------------------------------ training side (the hook)
    def __call__(self, trainer, stats: dict):
        """Called by the stage after each step, in the training thread."""
        if self.trainer is None and not hasattr(trainer, "save_ply"):  # stage 2: no Gaussians to save
            self.save_button.visible = False
        self.trainer = trainer
        self.stats = stats
        self._serve_requests(trainer)
        if self.server.get_clients():
            self._maybe_render(trainer)
        while self.paused:
            self._serve_requests(trainer)
            if self.server.get_clients():
                self._maybe_render(trainer)
            time.sleep(0.05)

    def _serve_requests(self, trainer):
        with self.lock:
            todo, self.requests = self.requests, set()
        if "save" in todo and hasattr(trainer, "save_ply"):
            self.log(f"live view: Gaussians saved to {trainer.save_ply()} at step {trainer.step}")
        if "export" in todo:
            if hasattr(trainer, "export_mesh"):  # stage 1: the coarse mesh from the Gaussians so far
                trainer.export_mesh()
                path = trainer.paths["coarse"]
            else:  # stage 2: the mesh with the texture so far
                trainer.export()
                path = trainer.paths["fine"]
            self.log(f"live view: mesh exported to {path} at step {trainer.step}")

    def _maybe_render(self, trainer):
        now = time.perf_counter()
        if now < self.next_render:
            return
        with torch.no_grad():
            for client in list(self.server.get_clients().values()):
                if not client.camera.image_width:
                    continue  # its camera state has not arrived yet
                out = trainer.render(client_camera(client.camera, self.max_resolution))
                client.scene.set_background_image(to_uint8(out["image"]), format="jpeg", jpeg_quality=80)
            self._update_panel(trainer)
        spent = time.perf_counter() - now
        self.renders += 1
        self.render_seconds += spent
        # keep rendering within `budget` of the wall time: wait (1 - b) / b times what it took
        self.next_render = time.perf_counter() + spent * (1 - self.budget) / self.budget

    def _update_panel(self, trainer):
        s = self.stats
        count = f"Gaussians: {s['gaussians']}  \n" if "gaussians" in s else ""
        total = getattr(trainer.cfg, "iters" if hasattr(trainer, "model") else "iters_refine", "?")
        self.status.content = (f"**{'stage 1' if hasattr(trainer, 'model') else 'stage 2'}**"
                               f"{' (paused)' if self.paused else ''}  \nstep {trainer.step} / {total}  \n"
                               f"loss: {s.get('loss', float('nan')):.4f}  \n{count}"
                               f"elapsed: {time.perf_counter() - self.t0:.0f} s")
        ref = reference_view(trainer)
        now = time.perf_counter()
        if ref is not None and now - self.reference_time > self.reference_interval:
            self.reference_time = now
            cam, rgb = ref
            side = np.concatenate([to_uint8(rgb), to_uint8(trainer.render(cam)["image"])], axis=1)
            if self.reference is None:
                self.reference = self.server.gui.add_image(side, label="input | current render", format="jpeg")
            else:
                self.reference.image = side

    def close(self):
        self.server.stop()


def reference_view(trainer):
    """(camera, rgb on white [3,H,W]) of the input view: the image in image mode, the first posed
    view in recon mode; None in text mode."""
    ctx = trainer.ctx
    if ctx.ref is not None:
        cam, rgb, mask = ctx.ref
        return cam, rgb * mask + (1 - mask)
    if ctx.views is not None:
        v = ctx.views
        return v.cameras[0], (v.rgbs[0] * v.masks[0] + (1 - v.masks[0])).to(ctx.device)
    return None


def reference_camera(trainer):
    ref = reference_view(trainer)
    return None if ref is None else ref[0]


# ------------------------------------------------------------------ finished outputs
def gaussian_arrays(path: str) -> dict:
    """Centres, covariances (R S S^T R^T), DC colours and opacities, as viser's splats take them."""
    from gaussians import GaussianModel, sh_to_rgb
    from gs_renderer import covariance_3d

    g = GaussianModel.load(path)
    g.check()
    with torch.no_grad():
        cov = covariance_3d(g.scales, torch.nn.functional.normalize(g.params["quats"], dim=1))
        return {"centers": g.means.numpy(), "covariances": cov.numpy(),
                "rgbs": sh_to_rgb(g.params["sh0"][:, 0]).clamp(0, 1).numpy(), "opacities": g.opacities[:, None].numpy()}


def run_items(path: str) -> tuple[list, str]:
    """A run.json: the files it names (Gaussians, final or coarse mesh) and a markdown summary."""
    with open(path) as fh:
        run = json.load(fh)
    folder = os.path.dirname(os.path.abspath(path))
    files, lines = [], [f"**{os.path.basename(path)}**"]
    for stage in ("stage1", "stage2"):
        rec = run.get(stage)
        if not rec:
            continue
        counts = ", ".join(f"{k} {rec[k]}" for k in ("steps", "gaussians", "faces") if k in rec)
        lines.append(f"{stage}: {counts}, {rec.get('timings', {}).get('total', rec.get('timings', {}).get('train', '?'))} s"
                     + (" (interrupted)" if rec.get("interrupted") else ""))
        for w in rec.get("warnings", []):
            lines.append(f"warning: {w}")
    outs = [run.get("stage1", {}).get("outputs", {}).get("ply"),
            run.get("stage2", {}).get("outputs", {}).get("mesh") or run.get("stage1", {}).get("outputs", {}).get("mesh")]
    for p in outs:
        if p:
            local = p if os.path.isfile(p) else os.path.join(folder, os.path.basename(p))
            if os.path.isfile(local):
                files.append(local)
    return files, "  \n".join(lines)


def extent(points: np.ndarray) -> tuple[np.ndarray, float]:
    lo, hi = np.percentile(points, 1, axis=0), np.percentile(points, 99, axis=0)
    return (lo + hi) / 2, float((hi - lo).max())


def unique_labels(paths: list) -> list:
    """A label per path that tells them apart: the file name, with as many parent folders as it
    takes where names repeat (``a/model.ply``, ``b/model.ply``), and ``(2)``, ``(3)`` for the same
    file given again."""
    parts = [os.path.abspath(p).split(os.sep) for p in paths]
    depth = [1] * len(paths)
    while True:
        labels = ["/".join(pp[-d:]) for pp, d in zip(parts, depth)]
        clash = [i for i, lab in enumerate(labels) if labels.count(lab) > 1 and depth[i] < len(parts[i]) - 1
                 and len({os.path.abspath(paths[j]) for j, other in enumerate(labels) if other == lab}) > 1]
        if not clash:
            break
        for i in clash:
            depth[i] += 1
    seen, out = {}, []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if seen[lab] == 1 else f"{lab} ({seen[lab]})")
    return out


class OutputViewer:
    """Gaussians, meshes and runs side by side (scripts/show.py)."""

    def __init__(self, paths: list, host: str = "127.0.0.1", port: int = 8080, log=print):
        viser = import_viser()
        items, summaries = [], []
        for p in paths:  # read everything first: a bad file fails before the server starts
            if p.endswith(".json"):
                files, text = run_items(p)
                summaries.append(text)
                items += [(f, self._load(f)) for f in files]
            else:
                items.append((p, self._load(p)))
        check_port(host, port)
        self.server = viser.ViserServer(host, port, verbose=False)
        self.server.scene.set_up_direction("+y")
        self.url, self.log = f"http://{host}:{port}", log
        self.handles = {}
        x = 0.0
        sizes = [it[1][2] for it in items]
        gap = 1.25 * max(sizes + [1e-6])
        labels = unique_labels([path for path, _ in items])
        for i, ((path, (kind, data, size)), label) in enumerate(zip(items, labels)):
            name = f"/item{i}"
            center = data.pop("center")
            pos = (x - center[0], -center[1], -center[2])
            if kind == "splats":
                h = self.server.scene.add_gaussian_splats(name, **data, position=pos)
            else:
                h = self.server.scene.add_mesh_trimesh(name, data["mesh"], position=pos)
            tag = self.server.scene.add_label(name + "_label", label, position=(x, -0.6 * size, 0.0))
            box = self.server.gui.add_checkbox(label, initial_value=True)
            box.on_update(self._toggle(label, h, tag))
            self.handles[label] = h
            x += gap
        for text in summaries:
            self.server.gui.add_markdown(text)
        span = max(x - gap, 0.0)
        self.home = (span / 2, 0.0, 1.5 * gap + span / 2)  # in front, everything in view
        self.server.on_client_connect(self._on_connect)
        log(f"viewer: {self.url} ({len(items)} item{'s' if len(items) != 1 else ''})")

    def _toggle(self, label, handle, tag):
        def cb(event):
            handle.visible = tag.visible = event.target.value
            self.log(f"viewer: {'show' if handle.visible else 'hide'} {label}")
        return cb

    def _on_connect(self, client):
        client.camera.position = self.home
        client.camera.look_at = (self.home[0], 0.0, 0.0)
        client.camera.up_direction = (0.0, 1.0, 0.0)

    @staticmethod
    def _load(path: str):
        """('splats' | 'mesh', viser arguments with 'center', size)."""
        from posed_views import is_gaussian_file

        if is_gaussian_file(path):
            data = gaussian_arrays(path)
            opaque = data["centers"][data["opacities"][:, 0] > 0.05]
            data["center"], size = extent(opaque if len(opaque) else data["centers"])
            return "splats", data, size
        from mesh import Mesh

        m = Mesh.load(path)
        v = m.v.numpy()
        center, size = extent(v)
        return "mesh", {"mesh": m.to_trimesh(), "center": center}, size

    def close(self):
        self.server.stop()
