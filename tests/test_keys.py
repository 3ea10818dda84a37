"""Config keys reach the code that uses them: each key set to a value other than its default changes
what it should (or arrives where it is used), so a key cut off from the code fails here."""
import os

import numpy as np
import pytest
import torch

from config import ConfigError, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = os.path.join(ROOT, "data", "ghost_rgba.png")
SPOT = os.path.join(ROOT, "data", "spot", "spot_triangulated.obj")
SMALL = ["ref_size=64", "resolution_schedule=[32]", "resolution_milestones=[]", "num_pts=300", "quiet=true",
         "rasterizer=torch", "mesh_renderer=torch", "device=cpu", "refine_resolution=32", "refine_inference_steps=10"]


def image_cfg(tmp_path, zero123_path, *over):
    return load_config(os.path.join(ROOT, "configs", "image.yaml"),
                       SMALL + [f"input={IMAGE}", "save_path=k", f"outdir={tmp_path}",
                                f"guidance_model={zero123_path}", *over])


def test_learning_rate_and_densification_keys_are_read_from_the_config():
    from densification import DensifyStrategy
    from gaussians import OptimConfig

    over = {"position_lr_scale": 3.0, "position_lr_init": 0.002, "position_lr_final": 0.0001,
            "position_lr_delay_mult": 0.5, "position_lr_max_steps": 77, "feature_lr": 0.03, "opacity_lr": 0.07,
            "scaling_lr": 0.004, "rotation_lr": 0.006, "percent_dense": 0.02, "densify_grad_threshold": 0.3,
            "density_start_iter": 5, "density_end_iter": 55, "densification_interval": 7,
            "opacity_reset_interval": 11, "extent": 3.0, "min_opacity": 0.02, "max_screen_size": 40.0,
            "max_world_size": 0.2, "split_samples": 3, "split_scale_div": 2.0, "reset_opacity_value": 0.05}
    cfg = load_config(os.path.join(ROOT, "configs", "base.yaml"),
                      [f"{k}={v}" for k, v in over.items()] + ["save_path=x"])
    got = {**vars(OptimConfig.from_config(cfg)), **vars(DensifyStrategy.from_config(cfg))}
    assert {k: got[k] for k in over} == over


def test_the_initial_blob_follows_its_keys(tmp_path, zero123_path):
    from trainer import Stage1

    cfg = image_cfg(tmp_path, zero123_path, "num_pts=400", "init_radius=0.3", "init_opacity=0.2", "init_sh_dc=0.5")
    g = Stage1(cfg, log=lambda *a: None).model
    assert len(g) == 400 and float(g.means.detach().norm(dim=1).max()) <= 0.3 + 1e-6
    assert torch.allclose(g.opacities.detach(), torch.full((400,), 0.2), atol=1e-5)
    sh0 = g.params["sh0"]
    assert sh0.min() >= 0 and sh0.max() <= 0.5 and sh0.max() > 0.45  # uniform in [0, init_sh_dc]


def test_final_prune_keys_reach_the_prune(tmp_path, zero123_path, monkeypatch):
    from trainer import Stage1

    seen = []
    monkeypatch.setattr("densification.final_prune", lambda g, lo, hi: seen.append((lo, hi)) or 0)
    s = Stage1(image_cfg(tmp_path, zero123_path, "iters=1", "final_prune_min_opacity=0.03",
                         "final_prune_max_scale=0.2", "mc_resolution=16", "mc_num_blocks=2", "texture_size=32",
                         "bake_resolution=16", "bake_num_azimuth=1", "bake_elevations=[0]",
                         "bake_top_bottom=false", "density_thresh=0.05", "decimate_target=0"), log=lambda *a: None)
    s.run()
    assert seen == [(0.03, 0.2)]


def test_mesh_export_keys_reach_the_density_query_the_cleanup_and_the_unwrap(monkeypatch):
    import mesh_utils
    from gaussians import sphere_of_gaussians

    calls = {}
    grid_fn, clean_fn, unwrap_fn = mesh_utils.density_grid, mesh_utils.clean_mesh, mesh_utils.unwrap_uv

    def grid(*a):
        calls["grid"] = a[1:]
        return grid_fn(*a)

    def clean(*a):
        calls["clean"] = a[2:]
        return clean_fn(*a)

    def unwrap(*a, method):
        calls["unwrap"] = a[2:] + (method,)
        return unwrap_fn(*a, method=method)
    monkeypatch.setattr(mesh_utils, "density_grid", grid)
    monkeypatch.setattr(mesh_utils, "clean_mesh", clean)
    monkeypatch.setattr(mesh_utils, "unwrap_uv", unwrap)
    cfg = load_config(os.path.join(ROOT, "configs", "base.yaml"),
                      ["save_path=x", "mc_resolution=32", "mc_num_blocks=4", "mc_padding=0.2", "mc_sigma_cut=2.5",
                       "mc_margin=0.01", "mc_min_opacity=0.02", "min_component_ratio=0.05", "remove_cavities=false",
                       "texture_size=32", "bake_resolution=32", "bake_num_azimuth=2", "bake_elevations=[0]",
                       "mesh_renderer=torch", "decimate_target=0", "mc_close_radius=0", "uv_unwrap=xatlas"])
    g = sphere_of_gaussians(800, scale=0.04)

    def render_fn(cam):
        return torch.ones(3, cam.height, cam.width), torch.ones(1, cam.height, cam.width)
    mesh_utils.gaussians_to_mesh(g, cfg, render_fn, log=lambda *a: None)
    assert calls["grid"] == (32, 4, 0.2, 2.5, 0.01, 0.02) and calls["clean"] == (0.05, False)
    assert calls["unwrap"] == (32, "xatlas")
    with pytest.raises(ConfigError, match="uv_unwrap"):
        load_config(os.path.join(ROOT, "configs", "base.yaml"), ["save_path=x", "uv_unwrap=lscm"])


def test_recon_view_keys_shape_the_views(monkeypatch):
    import posed_views

    cfg = load_config(os.path.join(ROOT, "configs", "recon.yaml"),
                      [f"input={SPOT}", "save_path=x", "recon_num_views=6", "recon_extent=0.5",
                       "recon_min_elevation=-10", "recon_max_elevation=20", "input_max_texture=64", "ref_size=32"])
    from mesh import Mesh

    seen, load = {}, Mesh.load
    monkeypatch.setattr(Mesh, "load", staticmethod(lambda path, **kw: seen.update(kw) or load(path, **kw)))
    views = posed_views.load_views(SPOT, cfg)
    assert seen["max_texture"] == 64
    assert len(views.cameras) == 6
    elevations = [np.degrees(np.arcsin(-c.c2w[1, 3] / np.linalg.norm(c.c2w[:3, 3]))) for c in views.cameras]
    assert -10 - 1e-3 <= min(elevations) and max(elevations) <= 20 + 1e-3
    mesh = load(SPOT)
    v = views.to_normalised(mesh.v)
    assert float((v.max(0).values - v.min(0).values).max()) == pytest.approx(0.5, abs=1e-4)


def test_guidance_keys_set_the_precision_the_slicing_and_the_clip(tmp_path, zero123_path):
    from cameras import Camera, View
    from guidance.zero123 import Zero123Guidance

    def guidance(*over):
        g = Zero123Guidance.from_config(image_cfg(tmp_path, zero123_path, *over), "cpu")
        g.prepare(image=torch.full((3, 64, 64), 0.5), elevation=0.0, radius=2.0)
        return g

    assert guidance("guidance_dtype=bf16").unet.dtype == torch.bfloat16
    plain, sliced = guidance(), guidance("attention_slicing=true")
    assert any("Sliced" in type(p).__name__ for p in sliced.unet.attn_processors.values())
    assert not any("Sliced" in type(p).__name__ for p in plain.unet.attn_processors.values())
    views = [View(Camera.orbit(0.0, 90.0, 2.0, 49.1, 64), 0.0, 90.0, 2.0)]
    shape = plain.encode(torch.rand(1, 3, plain.image_size, plain.image_size)).shape
    noisy, t = plain.randn(tuple(shape)), torch.tensor([500])
    torch.testing.assert_close(sliced._eps(noisy, t, views), plain._eps(noisy, t, views), atol=1e-5, rtol=1e-4)
    images = torch.rand(1, 3, 64, 64)
    clipped = guidance("grad_clip=0.001", "anneal_timestep=false")
    free = guidance("anneal_timestep=false")
    n = clipped.encode(images).numel()
    assert float(clipped.train_step(images, views, 0.5)) <= 0.5 * 0.001 ** 2 * n * 1.0001  # loss = |grad|^2 / 2
    assert float(free.train_step(images, views, 0.5)) > 0.5 * 0.001 ** 2 * n * 10


def stage2(tmp_path, zero123_path, *over):
    from trainer import Stage2

    return Stage2(image_cfg(tmp_path, zero123_path, f"mesh={SPOT}", *over), log=lambda *a: None)


def test_train_geo_moves_the_vertices_at_geom_lr(tmp_path, zero123_path):
    still = stage2(tmp_path, zero123_path)
    still.train_step()
    assert still.v_offsets is None
    moving = stage2(tmp_path, zero123_path, "train_geo=true", "geom_lr=0.001")
    moving.train_step()
    step = moving.v_offsets.detach().abs()
    assert step.max() > 1e-4 and step.max() <= 0.001 * 1.01  # Adam's first step: at most the rate


def test_refine_white_bg_false_keeps_stage_1_s_backgrounds(tmp_path, zero123_path, monkeypatch):
    s = stage2(tmp_path, zero123_path, "batch_size=4", "invert_bg_prob=1.0", "refine_white_bg=false")
    g = s.ctx.load_guidance()
    seen, real = [], g.refine
    monkeypatch.setattr(g, "refine", lambda images, views, strength, steps: seen.extend(v.background for v in views)
                        or real(images, views, strength, steps))
    s.train_step()
    assert seen == [(0.0, 0.0, 0.0)] * 4


def test_lambda_refine_weighs_the_refinement_loss(tmp_path, zero123_path):
    losses = [stage2(tmp_path, zero123_path, "lambda_ref_view=0", f"lambda_refine={w}").train_step()["loss"]
              for w in (1.0, 2.5)]
    assert losses[1] == pytest.approx(2.5 * losses[0], rel=1e-4)
