import math
import os

import pytest
import torch

from cameras import Camera, View
from guidance import ModelNotFoundError, build_guidance
from guidance.sd import StableDiffusionGuidance, direction_of
from guidance.zero123 import Zero123Guidance, camera_embedding


def views_at(elevations, azimuths, radius=2.0, size=64):
    return [View(Camera.orbit(e, a, radius, 49.1, size), e, a, radius) for e, a in zip(elevations, azimuths)]


def input_image():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 64, 64, generator=g)
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1
    return img, mask


@pytest.fixture(scope="module")
def z123(zero123_path):
    return Zero123Guidance(zero123_path, device="cpu", seed=0).prepare(*input_image(), elevation=-10.0, radius=2.0)


def test_zero123_loads_from_a_folder_with_the_real_layout(z123):
    assert z123.unet.config.in_channels == 8
    assert z123.dtype == torch.float32  # fp32 on the CPU
    clip_emb, vae_lat = z123.embeddings
    assert clip_emb.shape == (1, 32) and vae_lat.shape == (1, 4, 32, 32)
    assert all(not p.requires_grad for m in z123.models() for p in m.parameters())


def test_sds_gradient_reaches_the_render_and_not_the_models(z123):
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    loss = z123.train_step(images, views_at([0.0, 20.0], [30.0, -120.0]), step_ratio=0.3)
    loss.backward()
    assert torch.isfinite(loss) and images.grad is not None
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    assert all(p.grad is None for m in z123.models() for p in m.parameters())


def test_timestep_annealing_narrows_the_range(z123):
    lo0, hi0 = z123.timestep_range(0.0)
    lo1, hi1 = z123.timestep_range(0.8)
    assert (lo0, hi0) == (20, 980)
    assert lo1 == lo0 and hi1 < hi0 and hi1 - lo1 < 0.3 * (hi0 - lo0)
    z123.anneal_timestep = False
    assert z123.timestep_range(0.8) == (20, 980)
    z123.anneal_timestep = True


def test_refine_strength_zero_returns_the_input(z123):
    images = torch.rand(1, 3, 64, 64)
    v = views_at([0.0], [45.0])
    assert torch.equal(z123.refine(images, v, 0.0, 10), images)
    out = z123.refine(images, v, 0.5, 10)
    assert out.shape == images.shape and 0 <= out.min() and out.max() <= 1
    assert not torch.allclose(out, images)


def test_camera_embeddings_match_hand_computed_values():
    T = camera_embedding([-10.0, 30.0], [90.0, 180.0], [0.0, 0.5], input_elevation=-15.0, stable=False)
    torch.testing.assert_close(T, torch.tensor([[math.radians(-10), 1.0, 0.0, 0.0],
                                                [math.radians(30), 0.0, -1.0, 0.5]]), atol=1e-6, rtol=0)
    S = camera_embedding([-10.0], [90.0], [0.0], input_elevation=-15.0, stable=True)
    torch.testing.assert_close(S, torch.tensor([[math.radians(-10), 1.0, 0.0, math.radians(75)]]), atol=1e-6, rtol=0)


def test_zero123_uses_view_deltas(z123):
    """The conditioning is relative to the input view: elevation -10 is a delta of 0 here."""
    cc_same, _ = z123.conditioning(views_at([-10.0], [0.0]))
    T = camera_embedding([0.0], [0.0], [0.0], -10.0, False).view(1, 1, 4)
    expected = z123.cc_projection(torch.cat([z123.embeddings[0][:, None], T], -1))
    torch.testing.assert_close(cc_same, expected)


def test_fp32_cpu_runs_are_deterministic(zero123_path):
    losses = []
    for _ in range(2):
        g = Zero123Guidance(zero123_path, device="cpu", seed=3).prepare(*input_image(), elevation=0.0)
        images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
        losses.append(g.train_step(images, views_at([5.0], [60.0]), 0.5).item())
    assert losses[0] == losses[1]


def test_sd_guidance_with_view_dependent_prompts(sd_path):
    g = StableDiffusionGuidance(sd_path, device="cpu", guidance_scale=100.0, seed=0).prepare("a cat", "blurry")
    pos, neg = g.text
    assert pos.shape == (3, 77, 32) and not torch.equal(pos[0], pos[2])  # front != back prompt
    assert [direction_of(a) for a in (0, 45, 90, 150, -170, -90)] == [0, 0, 1, 2, 2, 1]
    images = torch.rand(1, 3, 64, 64).requires_grad_(True)
    loss = g.train_step(images, views_at([0.0], [170.0]), 0.1)
    loss.backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    assert g.refine(images.detach(), views_at([0.0], [0.0]), 0.3, 10).shape == (1, 3, 64, 64)


def test_missing_models_give_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError) as e:
        Zero123Guidance(str(tmp_path / "nowhere"), device="cpu")
    msg = str(e.value)
    assert "\n" not in msg and "Zero123" in msg and "huggingface-cli download" in msg
    (tmp_path / "partial").mkdir()
    with pytest.raises(ModelNotFoundError, match="local folder .* has no usable 'vae'"):
        Zero123Guidance(str(tmp_path / "partial"), device="cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="stabilityai/stable-diffusion-2-1-base.*sd_model="):
        StableDiffusionGuidance("stabilityai/stable-diffusion-2-1-base", device="cpu")


def test_a_stable_diffusion_checkpoint_is_not_a_zero123(sd_path):
    with pytest.raises(ModelNotFoundError, match="8"):
        Zero123Guidance(sd_path, device="cpu")


def test_build_from_config(zero123_path):
    from omegaconf import OmegaConf

    from config import load_config

    cfg = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "image.yaml"),
                      [f"guidance_model={zero123_path}", "save_path=x"])
    g = build_guidance(cfg, "cpu")
    assert isinstance(g, Zero123Guidance) and g.guidance_scale == 5.0 and not g.stable
    cfg2 = OmegaConf.merge(cfg, {"stable_zero123": True})
    assert build_guidance(cfg2, "cpu").stable
