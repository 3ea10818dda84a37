"""Guidance: loading the published checkpoint layouts strictly, and the reference's SDS / SDEdit
formulas, each restated here independently of the code under test."""
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cameras import Camera, View
from guidance import build_guidance
from guidance.base import ModelNotFoundError
from guidance.loading import ModelLoadError, hub_patterns, read_state_dict, weight_files
from guidance.sd import StableDiffusionGuidance, direction_of
from guidance.hub_layouts import CLIP_MEAN, CLIP_STD
from guidance.zero123 import Zero123Guidance, relative_camera
from io_utils import load_json


def views_at(elevations, azimuths, radius=2.0, size=64):
    return [View(Camera.orbit(e, a, radius, 49.1, size), e, a, radius) for e, a in zip(elevations, azimuths)]


def input_image():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 64, 64, generator=g)
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1
    return img, mask


def reference_alphas_cumprod():
    """The scaled_linear schedule of the published scheduler configs (beta 0.00085 -> 0.012)."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


@pytest.fixture(scope="module")
def z123(zero123_path):
    return Zero123Guidance(zero123_path, device="cpu", seed=0).prepare(*input_image(), elevation=-10.0, radius=2.0)


# ------------------------------------------------------------------------------------- loading
@pytest.mark.parametrize("fixture,sub,prefix", [("zero123_path", "clip_camera_projection", "proj"),
                                                ("zero123_bin_path", "clip_camera_projection", "proj"),
                                                ("zero123_community_path", "cc_projection", "projection")])
def test_every_published_zero123_layout_loads_its_own_weights(request, fixture, sub, prefix):
    path = request.getfixturevalue(fixture)
    g = Zero123Guidance(path, device="cpu")
    assert g.unet.config.in_channels == 8 and g.dtype == torch.float32
    # the weights are the files' (not a random initialisation): projection, UNet and VAE
    proj = read_state_dict(weight_files(path, sub))
    torch.testing.assert_close(g.cc_projection.linear.weight, proj[f"{prefix}.weight"], rtol=0, atol=0)
    torch.testing.assert_close(g.cc_projection.linear.bias, proj[f"{prefix}.bias"], rtol=0, atol=0)
    unet = read_state_dict(weight_files(path, "unet"))
    torch.testing.assert_close(g.unet.state_dict()["conv_in.weight"], unet["conv_in.weight"], rtol=0, atol=0)
    vae = read_state_dict(weight_files(path, "vae"))
    q = "encoder.mid_block.attentions.0." + ("query" if fixture == "zero123_bin_path" else "to_q") + ".weight"
    torch.testing.assert_close(g.vae.state_dict()["encoder.mid_block.attentions.0.to_q.weight"], vae[q], rtol=0, atol=0)
    assert all(not p.requires_grad for m in g.models() for p in m.parameters())


def test_stable_diffusion_2_1_base_layout_loads(sd_path):
    g = StableDiffusionGuidance(sd_path, device="cpu")
    sched = load_json(os.path.join(sd_path, "scheduler", "scheduler_config.json"))
    assert sched["_class_name"] == "PNDMScheduler"  # as published; DDIM is built from the same config
    torch.testing.assert_close(g.scheduler.alphas_cumprod.double(), reference_alphas_cumprod(), rtol=1e-6, atol=1e-7)
    te = read_state_dict(weight_files(sd_path, "text_encoder"))
    assert all(k.startswith("text_model.") for k in te)  # the published names
    loaded = {k.removeprefix("text_model."): v for k, v in g.text_encoder.state_dict().items()}
    torch.testing.assert_close(loaded["final_layer_norm.weight"], te["text_model.final_layer_norm.weight"], rtol=0, atol=0)
    torch.testing.assert_close(loaded["embeddings.token_embedding.weight"],
                               te["text_model.embeddings.token_embedding.weight"], rtol=0, atol=0)


def _copy(src, tmp_path, name="m"):
    dst = str(tmp_path / name)
    shutil.copytree(src, dst)
    return dst


def _rewrite(path, fn):
    from safetensors.torch import save_file

    sd = read_state_dict([path])
    save_file(fn(dict(sd)), path)


@pytest.mark.parametrize("edit,words", [
    (lambda sd: {k: v for k, v in sd.items() if k != "proj.bias"}, "missing key 'proj.bias'"),
    (lambda sd: {**sd, "proj.extra": torch.zeros(3)}, "unexpected key 'proj.extra'"),
    (lambda sd: {**sd, "proj.weight": torch.zeros(32, 30)}, "key 'proj.weight' has shape [32, 30], expected [32, 36]"),
])
def test_a_projection_that_does_not_match_its_config_is_a_one_line_error(zero123_path, tmp_path, edit, words):
    p = _copy(zero123_path, tmp_path)
    _rewrite(os.path.join(p, "clip_camera_projection", "diffusion_pytorch_model.safetensors"), edit)
    with pytest.raises(ModelLoadError) as e:
        Zero123Guidance(p, device="cpu")
    msg = str(e.value)
    assert "\n" not in msg and "clip_camera_projection" in msg and words in msg and p in msg


def test_a_unet_with_a_missing_weight_is_refused_not_randomly_filled(zero123_path, tmp_path):
    p = _copy(zero123_path, tmp_path)
    _rewrite(os.path.join(p, "unet", "diffusion_pytorch_model.safetensors"),
             lambda sd: {k: v for k, v in sd.items() if k != "conv_out.bias"})
    with pytest.raises(ModelLoadError, match=r"component 'unet'.*conv_out\.bias") as e:
        Zero123Guidance(p, device="cpu")
    assert "\n" not in str(e.value)


def test_a_unet_with_a_wrongly_shaped_weight_is_refused(zero123_path, tmp_path):
    p = _copy(zero123_path, tmp_path)
    _rewrite(os.path.join(p, "unet", "diffusion_pytorch_model.safetensors"),
             lambda sd: {**sd, "conv_in.bias": torch.zeros(5)})
    with pytest.raises(ModelLoadError, match=r"component 'unet'.*conv_in\.bias") as e:
        Zero123Guidance(p, device="cpu")
    assert "\n" not in str(e.value)


class Payload:
    """Anything but a tensor: torch.load(weights_only=True) must refuse to build it."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_bin_weights_are_read_with_weights_only(zero123_bin_path, tmp_path):
    p = _copy(zero123_bin_path, tmp_path)
    f = os.path.join(p, "clip_camera_projection", "diffusion_pytorch_model.bin")
    sd = torch.load(f, weights_only=True)
    torch.save({**sd, "evil": Payload()}, f)
    with pytest.raises(ModelLoadError, match="clip_camera_projection.*could not be read") as e:
        Zero123Guidance(p, device="cpu")
    assert "\n" not in str(e.value)


def test_the_layout_comes_from_the_folder_not_from_a_guess(zero123_path, tmp_path):
    p = _copy(zero123_path, tmp_path)
    cfg = os.path.join(p, "clip_camera_projection", "config.json")
    Path(cfg).write_text(json.dumps({"_class_name": "SomethingElse", "embedding_dim": 32}))
    with pytest.raises(ModelLoadError, match="names class 'SomethingElse', expected 'CLIPCameraProjection'"):
        Zero123Guidance(p, device="cpu")
    shutil.rmtree(os.path.join(p, "clip_camera_projection"))
    index = load_json(os.path.join(p, "model_index.json"))
    del index["clip_camera_projection"]
    Path(os.path.join(p, "model_index.json")).write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match="no camera projection"):
        Zero123Guidance(p, device="cpu")


def test_a_v_prediction_model_is_refused(sd_path, tmp_path):
    p = _copy(sd_path, tmp_path)
    f = os.path.join(p, "scheduler", "scheduler_config.json")
    Path(f).write_text(json.dumps({**load_json(f), "prediction_type": "v_prediction"}))
    with pytest.raises(ModelLoadError, match="v_prediction.*epsilon"):
        StableDiffusionGuidance(p, device="cpu")


def test_hub_downloads_take_one_weight_format_per_component():
    files = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.bin",
             "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
             "vae/config.json", "vae/diffusion_pytorch_model.bin", "tokenizer/merges.txt", "README.md",
             "sd-v2.1-ema.ckpt"]
    assert sorted(hub_patterns(files)) == sorted(["model_index.json", "unet/config.json", "vae/config.json",
                                                  "tokenizer/merges.txt", "unet/diffusion_pytorch_model.safetensors",
                                                  "vae/diffusion_pytorch_model.bin"])


def test_missing_models_give_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError) as e:
        Zero123Guidance(str(tmp_path / "nowhere"), device="cpu")
    msg = str(e.value)
    assert "\n" not in msg and "Zero123" in msg and "guidance_model=" in msg
    (tmp_path / "partial").mkdir()
    with pytest.raises(ModelNotFoundError, match="model_index.json is missing"):
        Zero123Guidance(str(tmp_path / "partial"), device="cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as e:
        StableDiffusionGuidance("stabilityai/stable-diffusion-2-1-base", device="cpu")
    msg = str(e.value)
    assert "\n" not in msg and "hf download stabilityai/stable-diffusion-2-1-base" in msg and "sd_model=" in msg


def test_a_stable_diffusion_checkpoint_is_not_a_zero123(sd_path):
    with pytest.raises(ModelNotFoundError, match="8"):
        Zero123Guidance(sd_path, device="cpu")


# ------------------------------------------------------------------------------ conditioning
def test_clip_pixels_are_the_8_bit_image_through_the_folders_image_processor(z123):
    """Reference: the view at 256 (bilinear), to 8 bits (truncated, as a PIL conversion), then the
    checkpoint's CLIPImageProcessor (bicubic resize to its size, centre crop, CLIP normalisation)."""
    from PIL import Image

    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(5))
    got = z123.clip_pixels(x)[0]
    u8 = (x[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    small = np.asarray(Image.fromarray(u8).resize((32, 32), Image.BICUBIC), dtype=np.float32) / 255
    want = (torch.from_numpy(small).permute(2, 0, 1) - torch.tensor(CLIP_MEAN)[:, None, None]) / \
        torch.tensor(CLIP_STD)[:, None, None]
    assert got.shape == (3, 32, 32)
    assert (got - want).abs().mean() < 0.02 and (got - want).abs().max() < 0.25


def test_zero123_conditioning_is_a_vae_posterior_sample(z123):
    clip_emb, vae_lat = z123.embeddings
    assert clip_emb.shape == (1, 32) and vae_lat.shape == (1, 4, 32, 32)
    img, mask = input_image()
    x = torch.nn.functional.interpolate((img * mask + 1 - mask)[None], (256, 256), mode="bilinear", align_corners=False)
    mean = z123.vae.encode(2 * x - 1).latent_dist.mean
    assert not torch.allclose(vae_lat, mean, atol=1e-4)  # sampled, not the mode
    assert (vae_lat - mean).abs().mean() < 3 * z123.vae.encode(2 * x - 1).latent_dist.std.mean()


def test_camera_embeddings_match_hand_computed_values():
    T = relative_camera([-10.0, 30.0], [90.0, 180.0], [0.0, 0.5], input_elevation=-15.0, stable=False)
    torch.testing.assert_close(T, torch.tensor([[math.radians(-10), 1.0, 0.0, 0.0],
                                                [math.radians(30), 0.0, -1.0, 0.5]]), atol=1e-6, rtol=0)
    S = relative_camera([-10.0], [90.0], [0.0], input_elevation=-15.0, stable=True)
    torch.testing.assert_close(S, torch.tensor([[math.radians(-10), 1.0, 0.0, math.radians(75)]]), atol=1e-6, rtol=0)


def test_zero123_uses_view_deltas(z123):
    """The conditioning is relative to the input view: elevation -10 is a delta of 0 here."""
    cc_same, _ = z123.conditioning(views_at([-10.0], [0.0]))
    T = relative_camera([0.0], [0.0], [0.0], -10.0, False).view(1, 1, 4)
    expected = z123.cc_projection(torch.cat([z123.embeddings[0][:, None], T], -1))
    torch.testing.assert_close(cc_same, expected)


# ------------------------------------------------------------------------------ SDS, SDEdit
def test_sds_timestep_follows_the_reference_schedule(z123):
    """Reference, anneal on: t = round((1 - step / iters) * 1000), clipped to [20, 980]."""
    iters = 500
    for step in (1, 250, 500, 137):
        want = min(max(round((1 - step / iters) * 1000), 20), 980)
        t = z123.timesteps(step / iters, 3)
        assert t.tolist() == [want] * 3, (step, t)
    assert z123.timesteps(1 / 500, 1).item() == 980 and z123.timesteps(0.5, 1).item() == 500
    assert z123.timesteps(1.0, 1).item() == 20
    z123.anneal_timestep = False
    try:
        t = torch.cat([z123.timesteps(0.9, 1000) for _ in range(4)])
        assert t.min() >= 20 and t.max() <= 980 and abs(t.float().mean() - 500) < 15
    finally:
        z123.anneal_timestep = True


@pytest.mark.parametrize("kind", ["zero123", "sd"])
def test_sds_loss_is_summed_for_zero123_and_averaged_for_sd(kind, z123, sd_path, monkeypatch):
    """With eps_pred - eps = c everywhere: loss = 0.5 * sum((w c)^2), w = 1 - alpha_bar(t);
    the reference divides by the batch for SD only."""
    g = z123 if kind == "zero123" else StableDiffusionGuidance(sd_path, device="cpu").prepare("a cat")
    c = 0.3
    monkeypatch.setattr(g, "randn", lambda shape: torch.zeros(shape))
    monkeypatch.setattr(g, "_eps", lambda x, t, views: torch.full_like(x, c))
    B, ratio = 2, 0.4
    images = torch.rand(B, 3, 64, 64).requires_grad_(True)
    loss = g.train_step(images, views_at([0.0] * B, [30.0, 60.0]), ratio)
    t = round((1 - ratio) * 1000)
    w = 1 - reference_alphas_cumprod()[t]
    side = g.image_size // 8
    want = 0.5 * (w * c) ** 2 * (B * 4 * side * side) / (1 if kind == "zero123" else B)
    assert loss.item() == pytest.approx(float(want), rel=1e-4)
    loss.backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    assert all(p.grad is None for m in g.models() for p in m.parameters())


@pytest.mark.parametrize("steps,strength,denoised", [(50, 0.8, 10), (50, 0.95, 3), (10, 0.87, 2), (10, 0.0, 10)])
def test_sdedit_skips_int_steps_times_strength(z123, monkeypatch, steps, strength, denoised):
    """Reference: init_step = int(steps * strength) (truncated), then denoise the rest."""
    calls = []
    real = z123._eps
    monkeypatch.setattr(z123, "_eps", lambda x, t, v: calls.append(int(t[0])) or real(x, t, v))
    images = torch.rand(1, 3, 64, 64)
    out = z123.refine(images, views_at([0.0], [45.0]), strength, steps)
    assert len(calls) == steps - int(steps * strength) == denoised
    assert out.shape == images.shape and 0 <= out.min() and out.max() <= 1
    assert torch.equal(z123.refine(images, views_at([0.0], [45.0]), 1.0, steps), images)


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
    plain = StableDiffusionGuidance(sd_path, device="cpu", view_dependent=False).prepare("a cat")
    assert torch.equal(plain.text[0][0], plain.text[0][2])
    images = torch.rand(1, 3, 64, 64).requires_grad_(True)
    g.train_step(images, views_at([0.0], [170.0]), 0.1).backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    assert g.refine(images.detach(), views_at([0.0], [0.0]), 0.8, 10).shape == (1, 3, 64, 64)


def test_build_from_config(zero123_path, sd_path):
    from omegaconf import OmegaConf

    from config import load_config

    cfg = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "image.yaml"),
                      [f"guidance_model={zero123_path}", "save_path=x", f"sd_model={sd_path}"])
    g = build_guidance(cfg, "cpu")
    assert isinstance(g, Zero123Guidance) and g.guidance_scale == 5.0 and not g.stable
    cfg2 = OmegaConf.merge(cfg, {"stable_zero123": True})
    assert build_guidance(cfg2, "cpu").stable
    both = build_guidance(OmegaConf.merge(cfg, {"lambda_sd": 0.5}), "cpu")
    sd = [p for _, p in both.parts if isinstance(p, StableDiffusionGuidance)][0]
    assert sd.guidance_scale == 100.0  # the reference's SD scale beside Zero123 too
    text = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "text.yaml"),
                       ["save_path=x", f"sd_model={sd_path}"])
    g = build_guidance(text, "cpu")
    assert isinstance(g, StableDiffusionGuidance) and g.guidance_scale == 100.0 and not g.view_dependent


def test_download_command_is_a_command_the_installed_huggingface_hub_provides():
    """The command named in every 'download it with' message exists in this environment."""
    import shutil
    import subprocess
    import sys
    from importlib.metadata import entry_points

    from guidance.loading import download_command, hub_cli

    cmd = hub_cli()
    assert cmd in {e.name for e in entry_points(group="console_scripts")}
    assert shutil.which(cmd) or os.path.isfile(os.path.join(os.path.dirname(sys.executable), cmd))
    assert download_command("a/b", "f.pt", "/m") == f"{cmd} download a/b f.pt --local-dir /m"
    r = subprocess.run([shutil.which(cmd) or os.path.join(os.path.dirname(sys.executable), cmd), "download", "--help"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--local-dir" in r.stdout
