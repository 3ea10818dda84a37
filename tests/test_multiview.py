"""MVDream / ImageDream: published single-file checkpoints (built key by key from the reference
code's module structure in ldm_layouts.py), loaded through the real path; the multi-view
attention, the camera convention, SDS and both stages end to end."""
import math
import os

import numpy as np
import pytest
import torch

from cameras import Camera, OrbitSampler, View
from helpers import cli
from guidance.ldm_layouts import build_multiview, multiview_state_dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = os.path.join(ROOT, "data", "ghost_rgba.png")
SMALL = ["ref_size=64", "resolution_schedule=[64]", "resolution_milestones=[]", "num_pts=600",
         "density_start_iter=2", "densification_interval=4", "mc_resolution=32", "mc_num_blocks=4",
         "texture_size=128", "bake_resolution=64", "bake_num_azimuth=4", "bake_elevations=[0]",
         "decimate_target=3000", "refine_resolution=64", "refine_inference_steps=4", "quiet=true",
         "rasterizer=torch", "mesh_renderer=torch", "device=cpu", "density_thresh=0.05"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from guidance.hub_layouts import write_clip_tokenizer

    folder = str(tmp_path_factory.mktemp("sd21") / "tokenizer")
    write_clip_tokenizer(folder)
    return folder


@pytest.fixture(scope="module")
def mvdream_file(tmp_path_factory):
    return build_multiview(str(tmp_path_factory.mktemp("mvdream")), "mvdream")


@pytest.fixture(scope="module")
def imagedream_file(tmp_path_factory):
    return build_multiview(str(tmp_path_factory.mktemp("imagedream")), "imagedream", fmt="safetensors", seed=1)


@pytest.fixture(scope="module")
def mvdream(mvdream_file, tokenizer):
    from guidance.mvdream import MVDreamGuidance

    return MVDreamGuidance(mvdream_file, tokenizer=tokenizer, guidance_scale=100.0, weighting="uniform",
                           anneal_timestep=False).prepare("a corgi", "blurry")


@pytest.fixture(scope="module")
def imagedream(imagedream_file, tokenizer):
    from guidance.mvdream import ImageDreamGuidance

    g = ImageDreamGuidance(os.path.dirname(imagedream_file), tokenizer=tokenizer, guidance_scale=5.0,
                           weighting="uniform")
    img = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    return g.prepare(image=img, mask=torch.ones(1, 64, 64), prompt="")


# ----------------------------------------------------------------------------------- loading
@pytest.mark.parametrize("kind", ["mvdream", "imagedream"])
def test_every_key_of_the_published_layout_is_used_or_unused_by_design(kind, mvdream, imagedream):
    g = mvdream if kind == "mvdream" else imagedream
    sd = multiview_state_dict(kind, seed=0 if kind == "mvdream" else 1)
    ledger = g.ledger
    assert set(ledger.used) | set(ledger.by_design) == set(sd)
    assert not set(ledger.used) & set(ledger.by_design)
    # what is unused by design: the OpenCLIP heads and last blocks (penultimate layers) and the derived
    # schedule buffers; every UNet and VAE tensor is used
    clip = "clip_model.model." if kind == "imagedream" else "cond_stage_model.model."  # the file's own names
    for k in ledger.by_design:
        assert k.startswith(clip) or k in ("alphas_cumprod_prev", "sqrt_alphas_cumprod",
                                                                 "sqrt_one_minus_alphas_cumprod",
                                                                 "log_one_minus_alphas_cumprod",
                                                                 "sqrt_recip_alphas_cumprod",
                                                                 "sqrt_recipm1_alphas_cumprod", "posterior_variance",
                                                                 "posterior_log_variance_clipped",
                                                                 "posterior_mean_coef1", "posterior_mean_coef2"), k
    last = clip + "transformer.resblocks.2."  # tiny text tower: 3 blocks
    assert any(k.startswith(last) for k in ledger.by_design)
    # the converted modules hold the file's numbers: sums of every parameter match the sums of the used tensors
    total = sum(float(sd[k].double().sum()) for k in ledger.used if k not in ("betas", "alphas_cumprod"))
    mods = g.models()
    ours = sum(float(p.double().sum()) for m in mods for p in m.parameters())
    # the vision tower's post_layernorm is loaded from ln_post (used), the text tower has no extra parameters
    assert ours == pytest.approx(total, rel=1e-6, abs=1e-3)


def test_camera_embedding_weights_sit_in_the_diffusers_class_embedding(mvdream):
    sd = multiview_state_dict("mvdream")
    lin = mvdream.unet.class_embedding
    assert torch.equal(lin.linear_1.weight, sd["model.diffusion_model.camera_embed.0.weight"])
    assert torch.equal(lin.linear_2.bias, sd["model.diffusion_model.camera_embed.2.bias"])
    assert mvdream.unet.config.class_embed_type == "projection"
    assert mvdream.unet.config.projection_class_embeddings_input_dim == 16
    # openaimodel: emb = time_embed(t_emb) + camera_embed(camera), camera_embed = Linear, SiLU, Linear
    P = "model.diffusion_model.camera_embed."
    cam = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    h = torch.nn.functional.silu(cam @ sd[P + "0.weight"].T + sd[P + "0.bias"])
    ref = h @ sd[P + "2.weight"].T + sd[P + "2.bias"]
    with torch.no_grad():
        assert torch.allclose(lin(cam), ref, atol=1e-5)


def test_image_prompt_projections_land_on_the_matching_attention(imagedream):
    """to_k_ip of LDM block input_blocks.1.1 belongs to diffusers' down_blocks.0.attentions.0."""
    sd = multiview_state_dict("imagedream", seed=1)
    attn = imagedream.unet.get_submodule("down_blocks.0.attentions.0.transformer_blocks.0.attn2")
    assert torch.equal(attn.processor.to_k_ip.weight,
                       sd["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k_ip.weight"])
    assert torch.equal(attn.to_k.weight, sd["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"])
    # every block: our LDM name of each attention agrees with diffusers' own conversion of its to_k
    n = 0
    for name, proc in imagedream.unet.attn_processors.items():
        if name.endswith("attn2.processor"):
            attn = imagedream.unet.get_submodule(name[:-len(".processor")])
            hits = [k for k, v in sd.items() if k.endswith("attn2.to_k_ip.weight") and torch.equal(v, proc.to_k_ip.weight)]
            assert len(hits) == 1
            assert torch.equal(attn.to_k.weight, sd[hits[0].replace("to_k_ip", "to_k")]), name
            n += 1
    assert n == 4  # tiny: one on the way down (level 0), the middle one, two on the way up (level 0)
    up = imagedream.unet.get_submodule("up_blocks.1.attentions.1.transformer_blocks.0.attn2")
    assert torch.equal(up.processor.to_v_ip.weight,
                       sd["model.diffusion_model.output_blocks.3.1.transformer_blocks.0.attn2.to_v_ip.weight"])


def test_a_checkpoint_missing_a_tensor_or_with_an_extra_one_is_a_one_line_error(tmp_path, tokenizer):
    from guidance.loading import ModelLoadError
    from guidance.mvdream import MVDreamGuidance

    sd = multiview_state_dict("mvdream")
    broken = dict(sd)
    del broken["model.diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q.weight"]
    torch.save(broken, tmp_path / "a.pt")
    with pytest.raises(ModelLoadError, match="UNet"):
        MVDreamGuidance(str(tmp_path / "a.pt"), tokenizer=tokenizer)
    extra = dict(sd)
    extra["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn3.to_q.weight"] = torch.zeros(64, 64)
    torch.save(extra, tmp_path / "b.pt")
    with pytest.raises(ModelLoadError, match="attn3"):
        MVDreamGuidance(str(tmp_path / "b.pt"), tokenizer=tokenizer)
    # an ImageDream file is not an MVDream file
    torch.save(multiview_state_dict("imagedream"), tmp_path / "c.pt")
    with pytest.raises(ModelLoadError, match="image_embed|to_k_ip"):
        MVDreamGuidance(str(tmp_path / "c.pt"), tokenizer=tokenizer)
    # another schedule than the reference's
    other = dict(sd)
    other["betas"] = sd["betas"] * 1.5
    torch.save(other, tmp_path / "d.pt")
    with pytest.raises(ModelLoadError, match="betas"):
        MVDreamGuidance(str(tmp_path / "d.pt"), tokenizer=tokenizer)


def test_checkpoints_are_read_without_unpickling_objects(tmp_path, tokenizer):
    from guidance.loading import ModelLoadError
    from guidance.mvdream import MVDreamGuidance

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"state_dict": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelLoadError, match="could not be read"):
        MVDreamGuidance(str(tmp_path / "evil.pt"), tokenizer=tokenizer)
    assert not (tmp_path / "pwned").exists()


def test_a_missing_checkpoint_names_the_hub_repo_and_file(tmp_path, tokenizer):
    from guidance.base import ModelNotFoundError
    from guidance.mvdream import ImageDreamGuidance, MVDreamGuidance

    with pytest.raises(ModelNotFoundError, match=r"MVDream/MVDream.*sd-v2\.1-base-4view\.pt.*mvdream_model="):
        MVDreamGuidance(str(tmp_path), tokenizer=tokenizer)
    with pytest.raises(ModelNotFoundError, match=r"sd-v2\.1-base-4view-ipmv\.pt.*Peng-Wang/ImageDream"):
        ImageDreamGuidance("Peng-Wang/ImageDream", tokenizer=tokenizer)  # offline in the tests: not in the cache


# ----------------------------------------------------------------------------------- cameras
def mvdream_camera(elevation, azimuth):
    """bytedance/MVDream camera_utils: create_camera_to_world_matrix (elevation up-positive, unit
    sphere) followed by convert_opengl_to_blender, flattened; stated here independently."""
    el, az = np.radians(elevation), np.radians(azimuth)
    pos = np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
    forward = -pos / np.linalg.norm(pos)
    right = np.cross(forward, [0, 1, 0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, :3] = np.array([right, up, -forward]).T
    c2w[:3, 3] = pos
    flip = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
    return (flip @ c2w).reshape(16)


def test_camera_embedding_of_hand_checked_poses():
    from guidance.multiview import camera_embedding

    # front view, on the horizon, at distance 2.5: identity rotation, camera on +z (OpenGL) -> -y (Blender)
    e = camera_embedding(Camera.orbit(0.0, 0.0, 2.5, 49.1, 64).c2w[None])[0].numpy()
    assert np.allclose(e, [1, 0, 0, 0, 0, 0, -1, -1, 0, 1, 0, 0, 0, 0, 0, 1], atol=1e-6)
    # azimuth 90: camera on +x. OpenGL c2w rows [0,0,1,3], [0,1,0,0], [-1,0,0,0] (right = -z, up = +y,
    # backward = +x); the flip takes rows (x, -z, y): [0,0,1,1], [1,0,0,0], [0,1,0,0] with unit translation
    e = camera_embedding(Camera.orbit(0.0, 90.0, 3.0, 49.1, 64).c2w[None])[0].numpy()
    assert np.allclose(e, [0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1], atol=1e-6)
    # ours puts a negative elevation above the object (the reference's orbit_camera); MVDream's get_camera
    # a positive one: the same pose either way
    for el, az, r in ((-15.0, 0.0, 2.5), (-30.0, 45.0, 1.7), (20.0, -120.0, 4.0), (-5.0, 270.0, 2.5)):
        ours = camera_embedding(Camera.orbit(el, az, r, 49.1, 64).c2w[None])[0].numpy()
        assert np.allclose(ours, mvdream_camera(-el, az), atol=1e-5), (el, az)
    # the translation is normalised: the radius does not matter
    a = camera_embedding(Camera.orbit(-10.0, 30.0, 1.0, 49.1, 64).c2w[None])
    b = camera_embedding(Camera.orbit(-10.0, 30.0, 7.0, 49.1, 64).c2w[None])
    assert torch.allclose(a, b, atol=1e-6)


def test_views_come_in_groups_of_four_90_degrees_apart(mvdream):
    rng = np.random.default_rng(3)
    orbit = OrbitSampler(0.0, -30, 30, 2.5, 49.1, 64)
    views = mvdream.sample_views(2, rng, orbit)
    assert len(views) == 8 and [v.group for v in views] == [0] * 4 + [1] * 4
    for g in (views[:4], views[4:]):
        assert len({v.elevation for v in g}) == 1 and -30 <= g[0].elevation <= 30
        for i, v in enumerate(g):
            assert (v.azimuth - g[0].azimuth) == pytest.approx(90.0 * i)
    assert views[0].elevation != views[4].elevation


def test_objects_share_one_background_in_the_trainer(tmp_path, mvdream_file, tokenizer):
    from config import load_config
    from trainer import Context

    cfg = load_config(os.path.join(ROOT, "configs", "text_mv.yaml"),
                      SMALL + ["prompt=a corgi", f"mvdream_model={mvdream_file}", f"mv_tokenizer={tokenizer}",
                               f"outdir={tmp_path}", "save_path=x", "batch_size=3"])
    ctx = Context(cfg, log=lambda *a: None)
    views = ctx.sample_views(64)
    assert len(views) == 12
    for k in range(3):
        assert len({views[4 * k + i].background for i in range(4)}) == 1


# ----------------------------------------------------------------------------------- attention
def test_multiview_attention_mixes_the_four_views_of_one_object_and_nothing_else(mvdream):
    """Change one view's input: the other three views' outputs change; another object's do not.
    With plain per-view attention (the processor swapped out) nothing crosses views at all."""
    unet = mvdream.unet
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 4, 32, 32, generator=g)
    t = torch.full((8,), 500)
    enc = mvdream.text[0].expand(8, -1, -1)
    cam = mvdream.cameras([View(Camera.orbit(0.0, 90.0 * i, 2.5, 49.1, 64)) for i in range(4)] * 2)
    mvdream.frames.frames = 4

    def run(inp):
        with torch.no_grad():
            return unet(inp, t, encoder_hidden_states=enc, class_labels=cam).sample

    base = run(x)
    y = x.clone()
    y[1] += torch.randn(4, 32, 32, generator=g)
    out = run(y)
    diff = (out - base).flatten(1).abs().amax(1)
    assert diff[1] > 1e-3  # the changed view
    assert (diff[[0, 2, 3]] > 1e-5).all()  # the other views of the same object
    assert (diff[4:] == 0).all()  # the other object: bit for bit the same

    from diffusers.models.attention_processor import AttnProcessor2_0

    saved = dict(unet.attn_processors)
    try:
        unet.set_attn_processor({k: (AttnProcessor2_0() if k.endswith("attn1.processor") else v)
                                 for k, v in saved.items()})
        single = (run(y) - run(x)).flatten(1).abs().amax(1)
        assert (single[[0, 2, 3]] == 0).all() and single[1] > 1e-3
    finally:
        unet.set_attn_processor(saved)


def test_multiview_attention_is_attention_over_the_concatenated_views(mvdream):
    """The processor against the formula: softmax(q k^T / sqrt(d)) v over the 4 views' tokens."""
    attn = mvdream.unet.get_submodule("down_blocks.0.attentions.0.transformer_blocks.0.attn1")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 10, attn.to_q.in_features, generator=g)
    with torch.no_grad():
        out = attn(x)
        ref = []
        for b in range(2):
            tokens = x[4 * b:4 * b + 4].reshape(40, -1)
            q, k, v = attn.to_q(tokens), attn.to_k(tokens), attn.to_v(tokens)
            h = attn.heads
            d = q.shape[-1] // h
            heads = []
            for i in range(h):
                s = slice(i * d, (i + 1) * d)
                w = torch.softmax(q[:, s] @ k[:, s].T / math.sqrt(d), -1)
                heads.append(w @ v[:, s])
            ref.append(attn.to_out[0](torch.cat(heads, -1)).reshape(4, 10, -1))
    assert torch.allclose(out, torch.cat(ref), atol=1e-5)


def test_image_prompt_attention_adds_attention_to_the_image_tokens(imagedream):
    attn = imagedream.unet.get_submodule("mid_block.attentions.0.transformer_blocks.0.attn2")
    p = attn.processor
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 6, attn.to_q.in_features, generator=g)
    ctx = torch.randn(5, 77 + p.ip_tokens, p.to_k_ip.in_features, generator=g)
    with torch.no_grad():
        out = attn(x, encoder_hidden_states=ctx)
        q = attn.to_q(x)
        h, d = attn.heads, q.shape[-1] // attn.heads

        def plain(k, v):
            res = []
            for i in range(h):
                s = slice(i * d, (i + 1) * d)
                res.append(torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(d), -1) @ v[..., s])
            return torch.cat(res, -1)

        text, image = ctx[:, :77], ctx[:, 77:]
        ref = plain(attn.to_k(text), attn.to_v(text)) + plain(p.to_k_ip(image), p.to_v_ip(image))
        ref = attn.to_out[0](ref)
    assert torch.allclose(out, ref, atol=1e-5)


def test_imagedream_reference_frame_conditions_the_four_views(imagedream):
    """The fifth frame (input view latent, zero camera) reaches the other frames through the
    multi-view attention: a different input image changes the noise prediction of all 4 views."""
    rng = np.random.default_rng(0)
    views = imagedream.sample_views(1, rng, OrbitSampler(0.0, -5, 0, 2.5, 49.1, 64))
    lat = torch.randn(4, 4, 32, 32, generator=torch.Generator().manual_seed(3))
    t = torch.full((4,), 600)
    with torch.no_grad():
        a = imagedream._eps(lat, t, views)
        saved = imagedream.image
        imagedream.image = (saved[0], saved[1], saved[2] + 1.0)  # another reference latent, same tokens
        b = imagedream._eps(lat, t, views)
        imagedream.image = saved
    assert a.shape == (4, 4, 32, 32)
    assert ((a - b).flatten(1).abs().amax(1) > 1e-5).all()


# ----------------------------------------------------------------------------------- SDS
@pytest.mark.parametrize("which", ["mvdream", "imagedream"])
def test_sds_gradient_on_the_renders_is_finite_and_nonzero(which, mvdream, imagedream):
    g = mvdream if which == "mvdream" else imagedream
    rng = np.random.default_rng(1)
    views = g.sample_views(2, rng, OrbitSampler(0.0, -30, 30, 2.5, 49.1, 64))
    x = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(4), requires_grad=True)
    loss = g.train_step(x, views, 0.4)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    assert (x.grad.flatten(1).abs().amax(1) > 0).all()  # every view receives gradient
    with pytest.raises(ValueError, match="groups of 4"):
        g.train_step(x[:3], views[:3], 0.4)


def test_sds_is_the_reference_formula(mvdream):
    """loss = 0.5 * sum((z - stopgrad(z - (eps_cfg - noise)))^2) / B, i.e. d loss / dz = (eps_cfg - noise) / B."""
    rng = np.random.default_rng(2)
    views = mvdream.sample_views(1, rng, OrbitSampler(0.0, -30, 30, 2.5, 49.1, 64))
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    state = mvdream.generator.get_state()
    z = mvdream.encode(x).detach().requires_grad_(True)
    mvdream.generator.set_state(state)
    mvdream.encode = lambda images, sample=True, _z=z: _z  # the same latents, with a gradient
    try:
        t_state = mvdream.generator.get_state()
        loss = mvdream.train_step(x, views, 0.5)
        loss.backward()
        mvdream.generator.set_state(t_state)
        t = mvdream.timesteps(0.5, 4)
        noise = mvdream.randn(z.shape).float()
        noisy = mvdream.scheduler.add_noise(z.detach(), noise, t)
        with torch.no_grad():
            eps = mvdream._eps(noisy, t, views).float()
        assert len(set(t.tolist())) == 1  # one timestep per object (annealing off in this fixture)
        assert torch.allclose(z.grad, (eps - noise) / 4, atol=1e-4)
    finally:
        del mvdream.encode


# ----------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("config", ["text_mv.yaml", "imagedream.yaml"])
@pytest.mark.slow
def test_main_and_main2_end_to_end(tmp_path, config, mvdream_file, imagedream_file, tokenizer):
    from mesh import Mesh

    if config == "text_mv.yaml":
        args = ["prompt=a ghost", f"mvdream_model={mvdream_file}"]
    else:
        args = [f"input={IMAGE}", f"imagedream_model={imagedream_file}"]
    args += SMALL + [f"mv_tokenizer={tokenizer}", f"outdir={tmp_path}", "save_path=x", "iters=3", "iters_refine=2"]
    for script in ("main.py", "main2.py"):
        r = cli(script, "--config", f"configs/{config}", *args, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "Traceback" not in r.stderr
    assert Mesh.load(os.path.join(tmp_path, "x.obj")).albedo is not None
    assert os.path.isfile(os.path.join(tmp_path, "x_model.ply"))


@pytest.mark.parametrize("config,args,words", [
    ("text_mv.yaml", ["prompt=a ghost", "mvdream_model=/nonexistent/sd-v2.1-base-4view.pt"],
     ["MVDream", "MVDream/MVDream", "sd-v2.1-base-4view.pt", "mvdream_model="]),
    ("imagedream.yaml", [f"input={IMAGE}", "imagedream_model=/nonexistent"],
     ["ImageDream", "Peng-Wang/ImageDream", "sd-v2.1-base-4view-ipmv.pt", "imagedream_model="]),
    ("imagedream.yaml", [f"input={IMAGE}", "lambda_sd=0"], ["lambda_sd"]),
    ("text_mv.yaml", ["prompt=a ghost", "imagedream=true"], ["choose one"]),
    ("text_mv.yaml", ["prompt=a ghost", "mvdream_model=MVDREAM", "mv_tokenizer=/nonexistent/tok"],
     ["tokenizer", "mv_tokenizer="]),
    ("imagedream.yaml", [f"input={IMAGE}", "imagedream_model=IMAGEDREAM", "imagedream_image_encoder=/nonexistent/clip"],
     ["imagedream_image_encoder", "/nonexistent/clip"]),
])
def test_missing_checkpoints_and_bad_switches_are_one_line_errors(tmp_path, config, args, words, tokenizer,
                                                                 mvdream_file, imagedream_file):
    args = [a.replace("MVDREAM", mvdream_file).replace("IMAGEDREAM", imagedream_file) for a in args]
    r = cli("main.py", "--config", f"configs/{config}", f"outdir={tmp_path}/out", "save_path=x", "iters=1",
            f"mv_tokenizer={tokenizer}", *args)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)
    assert not os.path.exists(tmp_path / "out") or not [f for f in os.listdir(tmp_path / "out")
                                                         if not f.startswith(".")]  # nothing written


def test_tokens_are_padded_as_open_clip_tokenize(mvdream):
    """open_clip.tokenize: [sot] + BPE tokens + [eot], zero-padded to 77, truncated keeping eot last."""
    tok = mvdream.tokenizer
    sot, eot = tok.convert_tokens_to_ids("<|startoftext|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    ids = tok(["a corgi"], padding="max_length", max_length=77, truncation=True).input_ids[0]
    body = tok("a corgi", add_special_tokens=False).input_ids
    assert ids == [sot] + body + [eot] + [0] * (77 - len(body) - 2)
    long = tok(["word " * 200], padding="max_length", max_length=77, truncation=True).input_ids[0]
    assert len(long) == 77 and long[0] == sot and long[-1] == eot


# ----------------------------------------------------------------------------------- against the reference forward
def test_converted_mvdream_unet_equals_the_reference_forward(mvdream):
    """The diffusers UNet with our processors against ldm_reference.unet_forward (openaimodel's
    forward as plain functions of the raw state dict): 2 objects x 4 views, per-view timesteps."""
    from ldm_reference import unet_forward

    sd = multiview_state_dict("mvdream")
    g = torch.Generator().manual_seed(7)
    x = torch.randn(8, 4, 32, 32, generator=g)
    t = torch.randint(0, 1000, (8,), generator=g)
    ctx = torch.randn(8, 77, 64, generator=g)
    cam = torch.randn(8, 16, generator=g)
    mvdream.frames.frames = 4
    with torch.no_grad():
        ours = mvdream.unet(x, t, encoder_hidden_states=ctx, class_labels=cam).sample
        ref = unet_forward(sd, x, t, ctx, cam, frames=4)
    assert ref.abs().max() > 1e-3
    assert torch.allclose(ours, ref, atol=1e-4, rtol=1e-4), (ours - ref).abs().max()


def test_converted_imagedream_unet_and_resampler_equal_the_reference_forward(imagedream):
    from ldm_reference import resampler, unet_forward

    sd = multiview_state_dict("imagedream", seed=1)
    g = torch.Generator().manual_seed(8)
    x = torch.randn(10, 4, 32, 32, generator=g)
    t = torch.randint(0, 1000, (10,), generator=g)
    ctx = torch.randn(10, 77, 64, generator=g)
    cam = torch.randn(10, 16, generator=g)
    feats = torch.randn(10, 17, 80, generator=g)  # tiny OpenCLIP vision tower: 4x4 patches + class token, width 80
    ip_img = torch.randn(2, 4, 32, 32, generator=g)
    with torch.no_grad():
        tokens = imagedream.image_embed(feats)
        assert torch.allclose(tokens, resampler(sd, feats), atol=1e-5)
        xin = x.clone()
        xin[4::5] = ip_img  # the reference places the clean latent in each object's last frame
        imagedream.frames.frames = 5
        ours = imagedream.unet(xin, t, encoder_hidden_states=torch.cat([ctx, tokens], 1), class_labels=cam).sample
        ref = unet_forward(sd, x, t, ctx, cam, frames=5, ip=feats, ip_img=ip_img)
    assert torch.allclose(ours, ref, atol=1e-4, rtol=1e-4), (ours - ref).abs().max()


@pytest.mark.parametrize("name,reference", [
    # dreamgaussian/dreamgaussian configs/text_mv.yaml and guidance/mvdream_utils.py (guidance_scale=100)
    ("text_mv.yaml", {"mvdream": True, "lambda_sd": 1, "lambda_zero123": 0, "batch_size": 1, "iters": 500,
                      "iters_refine": 50, "radius": 2.5, "fovy": 49.1, "num_pts": 5000, "sh_degree": 0,
                      "position_lr_max_steps": 300, "density_start_iter": 0, "density_end_iter": 3000,
                      "densification_interval": 50, "opacity_reset_interval": 700, "densify_grad_threshold": 0.01,
                      "anneal_timestep": True, "invert_bg_prob": 0.5, "sd_guidance_scale": 100, "t_min": 0.02,
                      "t_max": 0.98, "texture_lr": 0.2, "geom_lr": 0.0001, "density_thresh": 1}),
    # configs/imagedream.yaml and guidance/imagedream_utils.py (guidance_scale=5); no input-view losses
    ("imagedream.yaml", {"imagedream": True, "mvdream": False, "lambda_sd": 1, "lambda_zero123": 0, "batch_size": 1,
                         "iters": 500, "iters_refine": 50, "radius": 2.5, "fovy": 49.1, "min_ver": -5, "max_ver": 0,
                         "warmup_rgb_loss": True, "position_lr_max_steps": 300, "density_start_iter": 50,
                         "densification_interval": 50, "imagedream_guidance_scale": 5, "lambda_rgb": 0,
                         "lambda_mask": 0, "lambda_ref_view": 0, "ref_size": 256, "elevation": 0}),
])
def test_configs_carry_the_reference_values(name, reference):
    from config import load_config

    cfg = load_config(os.path.join(ROOT, "configs", name), ["save_path=x"])
    for k, v in reference.items():
        assert cfg[k] == v, (k, cfg[k], v)
    assert cfg.sds_weighting == "uniform"  # the reference's multi-view SDS has no w(t)
    assert "ugly, bad anatomy" in cfg.negative_prompt


# ----------------------------------------------------------------------------------- vision tower from elsewhere
@pytest.fixture(scope="module")
def laion_like(tmp_path_factory):
    """A CLIPModel folder as laion/CLIP-ViT-H-14-laion2B-s32B-b79K ships it for transformers
    (config.json of a CLIPModel, model.safetensors), with the tiny layout's vision tower sizes."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(3)
    cfg = CLIPConfig(text_config=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=1,
                                      vocab_size=514),
                     vision_config=dict(hidden_size=80, intermediate_size=320, num_hidden_layers=3, num_attention_heads=1,
                                        image_size=32, patch_size=8, hidden_act="gelu", layer_norm_eps=1e-5),
                     projection_dim=64)
    folder = str(tmp_path_factory.mktemp("laion_clip"))
    CLIPModel(cfg).save_pretrained(folder)
    return folder


def open_clip_visual_keys(folder):
    """The laion folder's vision tower under OpenCLIP's names, as ImageDream's file holds it
    (``clip_model.model.visual.*``)."""
    from transformers import CLIPModel

    m = CLIPModel.from_pretrained(folder).state_dict()
    v = {k.split("vision_model.", 1)[1]: t for k, t in m.items() if "vision_model." in k}
    p = "clip_model.model.visual."
    out = {p + "class_embedding": v["embeddings.class_embedding"],
           p + "positional_embedding": v["embeddings.position_embedding.weight"],
           p + "conv1.weight": v["embeddings.patch_embedding.weight"],
           p + "proj": m[next(k for k in m if k.endswith("visual_projection.weight"))].T.contiguous()}
    for ours, theirs in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for s in ("weight", "bias"):
            out[p + f"{ours}.{s}"] = v[f"{theirs}.{s}"]
    for i in range(3):
        a, b = f"encoder.layers.{i}.", p + f"transformer.resblocks.{i}."
        for s in ("weight", "bias"):
            out[b + f"attn.in_proj_{s}"] = torch.cat([v[a + f"self_attn.{n}_proj.{s}"] for n in "qkv"])
            for ours, theirs in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("attn.out_proj", "self_attn.out_proj"),
                                 ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
                out[b + f"{ours}.{s}"] = v[a + f"{theirs}.{s}"]
    return out


def test_a_file_without_the_vision_tower_takes_it_from_imagedream_image_encoder(tmp_path, tokenizer, laion_like):
    from guidance.loading import ModelLoadError
    from guidance.mvdream import ImageDreamGuidance

    sd = multiview_state_dict("imagedream", seed=1)
    bare = {k: t for k, t in sd.items() if not k.startswith("clip_model.model.visual.")}
    torch.save(bare, tmp_path / "bare.pt")
    with pytest.raises(ModelLoadError, match="imagedream_image_encoder=laion/CLIP-ViT-H-14"):
        ImageDreamGuidance(str(tmp_path / "bare.pt"), tokenizer=tokenizer)
    external = ImageDreamGuidance(str(tmp_path / "bare.pt"), tokenizer=tokenizer, image_encoder=laion_like)
    assert set(external.ledger.used) | set(external.ledger.by_design) == set(bare)
    # the same weights inside the file (OpenCLIP names) give the same image-prompt features
    torch.save({**bare, **open_clip_visual_keys(laion_like)}, tmp_path / "full.pt")
    inside = ImageDreamGuidance(str(tmp_path / "full.pt"), tokenizer=tokenizer)
    px = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = external.image_features(px), inside.image_features(px)
    assert a.shape == (1, 17, 80) and torch.allclose(a, b, atol=1e-5)
    img = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))
    external.prepare(image=img, mask=torch.ones(1, 64, 64))
    views = external.sample_views(1, np.random.default_rng(0), OrbitSampler(0.0, -5, 0, 2.5, 49.1, 64))
    x = torch.rand(4, 3, 64, 64, requires_grad=True)
    external.train_step(x, views, 0.5).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_text_encoder_is_open_clip_penultimate_layer(mvdream):
    """The converted text tower against FrozenOpenCLIPEmbedder(layer="penultimate") restated."""
    from ldm_reference import open_clip_text

    sd = multiview_state_dict("mvdream")
    tokens = torch.randint(0, 514, (2, 77), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        ours = mvdream.text_encoder(tokens)[0]
        ref = open_clip_text(sd, tokens)
    assert torch.allclose(ours, ref, atol=1e-4), (ours - ref).abs().max()


def test_demo_app_names_the_imagedream_file_to_download(tmp_path, imagedream_file):
    from demo import model_status
    from config import load_config

    cfg = load_config(os.path.join(ROOT, "configs", "imagedream.yaml"), ["save_path=x", f"imagedream_model={tmp_path}"])
    ok, msg = model_status(cfg)
    assert not ok and "hf download Peng-Wang/ImageDream sd-v2.1-base-4view-ipmv.pt" in msg
    cfg = load_config(os.path.join(ROOT, "configs", "imagedream.yaml"),
                      ["save_path=x", f"imagedream_model={os.path.dirname(imagedream_file)}"])
    ok, msg = model_status(cfg)
    assert ok and imagedream_file in msg


def test_imagedream_key_names_are_imagedreams_own_and_either_family_loads(tmp_path, tokenizer, imagedream):
    """ImageDream's LatentDiffusionInterface saves vae_model.* and clip_model.model.*; MVDream's
    names (first_stage_model.*, cond_stage_model.model.*) load too, to the same numbers; a file
    with both or neither is one line."""
    from guidance.loading import ModelLoadError
    from guidance.mvdream import ImageDreamGuidance

    sd = multiview_state_dict("imagedream", seed=1)
    assert any(k.startswith("vae_model.encoder.") for k in sd) and any(k.startswith("clip_model.model.visual.") for k in sd)
    assert not any(k.startswith(("first_stage_model.", "cond_stage_model.")) for k in sd)
    assert imagedream.ledger.family == "ImageDream"
    renamed = {("first_stage_model." + k[10:] if k.startswith("vae_model.") else
                "cond_stage_model." + k[11:] if k.startswith("clip_model.") else k): v for k, v in sd.items()}
    torch.save(renamed, tmp_path / "mvnames.pt")
    other = ImageDreamGuidance(str(tmp_path / "mvnames.pt"), tokenizer=tokenizer)
    assert other.ledger.family == "MVDream"
    for a, b in zip(imagedream.models(), other.models()):
        for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert na == nb and torch.equal(pa, pb), na
    torch.save({**sd, "first_stage_model.encoder.conv_in.weight": torch.zeros(1)}, tmp_path / "both.pt")
    torch.save({k: v for k, v in sd.items() if not k.startswith(("vae_model.", "clip_model."))}, tmp_path / "none.pt")
    for name, word in (("both.pt", "both"), ("none.pt", "neither")):
        with pytest.raises(ModelLoadError) as e:
            ImageDreamGuidance(str(tmp_path / name), tokenizer=tokenizer)
        assert word in str(e.value) and "vae_model.*" in str(e.value) and "\n" not in str(e.value)
    # a missing tensor is named as the file names it
    torch.save({k: v for k, v in sd.items() if k != "vae_model.encoder.conv_in.weight"}, tmp_path / "gap.pt")
    with pytest.raises(ModelLoadError, match="'vae_model.encoder.conv_in.weight'"):
        ImageDreamGuidance(str(tmp_path / "gap.pt"), tokenizer=tokenizer)


def test_imagedream_image_prompt_pixels_are_truncated_as_to_pil_image():
    """The reference turns the input view into 8-bit pixels with torchvision's to_pil_image, i.e.
    ``pic.mul(255).byte()``: truncation. Stated here independently: floor(x * 255), then
    OpenCLIP's normalisation (at the tower's own size no resize or crop changes a pixel)."""
    from types import SimpleNamespace

    from guidance.mvdream import ImageDreamGuidance
    from guidance.hub_layouts import CLIP_MEAN, CLIP_STD

    g = ImageDreamGuidance.__new__(ImageDreamGuidance)
    g.image_encoder = SimpleNamespace(config=SimpleNamespace(image_size=8))
    g.device, g.dtype = torch.device("cpu"), torch.float32
    k = torch.randint(0, 255, (1, 3, 8, 8)).float()
    x = (k + 0.6) / 255  # x * 255 = k + 0.6: truncation gives k, rounding k + 1
    expected = (k / 255 - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]
    torch.testing.assert_close(g.clip_pixels(x), expected, atol=1e-6, rtol=0)
