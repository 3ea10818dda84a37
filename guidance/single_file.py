"""Single-file latent-diffusion checkpoints (MVDream ``sd-v2.1-base-4view.pt``, ImageDream
``sd-v2.1-base-4view-ipmv.pt``): found, read safely, and converted to diffusers / transformers
modules, every tensor accounted for.

The file is the state dict of the reference's model class, with the key names of its project:
MVDream's ``LatentDiffusion`` names the autoencoder ``first_stage_model`` and the text encoder
``cond_stage_model``; ImageDream's ``LatentDiffusionInterface`` names them ``vae_model`` and
``clip_model``. The family is read from the file's own keys (``key_family``), never its name, and
the parts are loaded under MVDream's names (``as_family``); messages name the file's own keys.

* ``model.diffusion_model.*``  the UNet (openaimodel ``MultiViewUNetModel``): converted with
  diffusers' ``convert_ldm_unet_checkpoint``; ``camera_embed.{0,2}`` go to the projection class
  embedding; ImageDream's ``image_embed.*`` (Resampler) and ``attn2.to_k_ip`` / ``to_v_ip`` to our
  modules (``guidance.multiview``);
* ``first_stage_model.*`` / ``vae_model.*``  the KL autoencoder: ``convert_ldm_vae_checkpoint``;
* ``cond_stage_model.model.*`` / ``clip_model.model.*``  OpenCLIP ViT-H/14: its text tower through
  ``convert_open_clip_checkpoint`` (the reference uses the penultimate layer, so the last block,
  ``text_projection`` and ``logit_scale`` are unused by design); ImageDream's vision tower
  (``visual.*``) mapped onto transformers' CLIPVisionModel (the image prompt is the penultimate
  block's hidden states: the last block, ``ln_post`` and ``proj`` are unused by design);
* ``betas``, ``alphas_cumprod`` and ten more schedule buffers: checked against the DDIM schedule
  built here (scaled-linear betas 0.00085 -> 0.012 over 1000 steps, as the reference's configs).

Sizes are read from the tensors' shapes; what shapes cannot tell is the published configuration
(``mvdream/configs/sd-v2-base.yaml``: 64 channels per UNet attention head; OpenCLIP ViT-H: 64 per
text head, 80 per vision head).
"""
from __future__ import annotations

import os
import re

import torch

from guidance.base import ModelNotFoundError
from guidance.loading import (ModelLoadError, _looks_like_path, download_command, from_hub, quiet_libraries,
                              resolve_folder)

UNET, VAE, CLIP = "model.diffusion_model.", "first_stage_model.", "cond_stage_model.model."
VISUAL = CLIP + "visual."
SCHEDULE_BUFFERS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                    "posterior_mean_coef1", "posterior_mean_coef2")
UNET_HEAD_CHANNELS = 64  # num_head_channels of the published UNet config
TEXT_HEAD_CHANNELS = 64  # OpenCLIP ViT-H/14 text tower: 1024 wide, 16 heads
VISION_HEAD_CHANNELS = 80  # OpenCLIP ViT-H/14 vision tower: 1280 wide, 16 heads
LINEAR_START, LINEAR_END, TIMESTEPS = 0.00085, 0.012, 1000  # the reference's beta schedule


# ------------------------------------------------------------------------------ finding the file
def file_in(folder: str, filename: str) -> str | None:
    """``filename`` in ``folder``, or its ``.safetensors`` conversion."""
    for name in (filename, os.path.splitext(filename)[0] + ".safetensors"):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


def resolve_checkpoint(path: str, repo: str, filename: str, what: str, key: str) -> str:
    """The local file of a single-file checkpoint: ``path`` itself, ``path/filename`` for a folder,
    or ``filename`` of hub repo ``path`` (downloaded, or from the cache when offline). One-line
    ModelNotFoundError naming the hub repo and file otherwise."""
    path = os.path.expanduser(str(path))
    how = (f"download {filename} from the hub repo {repo} (`{download_command(repo, filename)}`) and set "
           f"{key}=/path/to/{filename}")
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        found = file_in(path, filename)
        if found is None:
            raise ModelNotFoundError(f"{what}: {path} holds no {filename}; {how}")
        return found
    if _looks_like_path(path):
        raise ModelNotFoundError(f"{what}: no file at {path}; {how}")
    from huggingface_hub import hf_hub_download

    return from_hub(lambda local_only: hf_hub_download(path, filename, local_files_only=local_only), what,
                    f"{filename} of '{path}'", how)


def find_checkpoint(path: str, filename: str) -> str | None:
    """The local file of a single-file checkpoint (the file, in the folder, or in the Hugging Face
    cache for a hub repo) without downloading anything; None when it is not here."""
    path = os.path.expanduser(str(path))
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        return file_in(path, filename)
    if _looks_like_path(path):
        return None
    try:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(path, filename, local_files_only=True)
    except Exception:
        return None


def read_checkpoint(file: str, what: str) -> dict:
    """Tensors of a ``.pt`` / ``.ckpt`` (``torch.load(weights_only=True)``: never arbitrary objects;
    a ``state_dict`` wrapper is unwrapped) or ``.safetensors`` file."""
    try:
        if file.endswith(".safetensors"):
            from safetensors.torch import load_file

            sd = load_file(file)
        else:
            try:
                sd = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) serialisation cannot be memory-mapped
                sd = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise ModelLoadError(f"{what}: {file} could not be read as a checkpoint ({type(e).__name__}: {msg})") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd:
        raise ModelLoadError(f"{what}: {file} holds no state dict")
    bad = next((k for k, v in sd.items() if not torch.is_tensor(v)), None)
    if bad is not None:
        raise ModelLoadError(f"{what}: {file}: entry '{bad}' is not a tensor")
    return sd


# ------------------------------------------------------------------------------ accounting
class Ledger:
    """Which checkpoint keys were used, and why the rest were not (by design or not at all)."""

    def __init__(self, sd: dict, what: str):
        self.sd, self.what = sd, what
        self.used: set = set()
        self.by_design: dict = {}

    def take(self, keys):
        self.used.update(keys)

    def skip(self, keys, why: str):
        for k in keys:
            self.by_design[k] = why

    def left(self, prefix: str = "") -> list:
        return sorted(k for k in self.sd if k.startswith(prefix) and k not in self.used and k not in self.by_design)

    def require_all(self, prefix: str, part: str):
        rest = self.left(prefix)
        if rest:
            raise ModelLoadError(f"{self.what}: {part} has {len(rest)} tensor(s) this architecture does not use, "
                                 f"first '{rest[0]}' (a different model?)")


def need(sd: dict, key: str, what: str, part: str) -> torch.Tensor:
    if key not in sd:
        raise ModelLoadError(f"{what}: missing key '{key}' ({part}); is this the right checkpoint?")
    return sd[key]


def load_strict(module, state: dict, what: str, part: str, ignore=("position_ids",)):
    """Load ``state`` into ``module``: every parameter filled, nothing left over, shapes equal."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(ignore)]
    extra = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    problem = ([f"missing '{k}'" for k in missing] + [f"unexpected '{k}'" for k in extra]
               + [f"'{k}' has shape {list(state[k].shape)}, expected {list(own[k].shape)}" for k in wrong])
    if problem:
        raise ModelLoadError(f"{what}: the {part} does not convert: {problem[0]}"
                             + (f" (and {len(problem) - 1} more)" if len(problem) > 1 else ""))
    module.load_state_dict(state, strict=False)
    return module


def library_names(model, state: dict, prefix: str) -> dict:
    """``state`` named as ``model`` names its weights: transformers 5 drops the ``text_model.`` /
    ``vision_model.`` prefix that earlier versions (and the conversions) use."""
    if any(k.startswith(prefix) for k in model.state_dict()):
        return state
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


# ------------------------------------------------------------------------------ the UNet
def _levels(sd: dict, what: str):
    """channel_mult, num_res_blocks, attention levels of the openaimodel encoder path."""
    C = need(sd, UNET + "input_blocks.0.0.weight", what, "UNet").shape[0]
    mult, res, attn = [], [], []
    i = 1
    while UNET + f"input_blocks.{i}.0.in_layers.0.weight" in sd or UNET + f"input_blocks.{i}.0.op.weight" in sd:
        if UNET + f"input_blocks.{i}.0.op.weight" in sd:  # downsample: next level
            mult.append(None)
        else:
            out = sd[UNET + f"input_blocks.{i}.0.out_layers.3.weight"].shape[0]
            if not mult or mult[-1] is None:
                if mult:
                    mult.pop()
                mult.append(out // C)
                res.append(0)
                attn.append(UNET + f"input_blocks.{i}.1.norm.weight" in sd)
            res[-1] += 1
        i += 1
    if not mult or len(set(res)) != 1:
        raise ModelLoadError(f"{what}: the UNet's encoder blocks do not follow the LDM layout")
    return C, mult, res[0], attn


def unet_config(sd: dict, what: str) -> dict:
    """diffusers UNet2DConditionModel config of the checkpoint's UNet (through diffusers'
    ``create_unet_diffusers_config_from_ldm``, from an LDM config rebuilt from the shapes)."""
    from diffusers.loaders.single_file_utils import create_unet_diffusers_config_from_ldm

    C, mult, nres, attn = _levels(sd, what)
    mid = UNET + "middle_block.1."
    context = need(sd, mid + "transformer_blocks.0.attn2.to_k.weight", what, "UNet").shape[1]
    depth = len({k.split(".")[4] for k in sd if k.startswith(mid + "transformer_blocks.")})
    params = {"in_channels": sd[UNET + "input_blocks.0.0.weight"].shape[1], "model_channels": C,
              "out_channels": need(sd, UNET + "out.2.weight", what, "UNet").shape[0],
              "attention_resolutions": [2 ** i for i, a in enumerate(attn) if a], "num_res_blocks": nres,
              "channel_mult": mult, "num_head_channels": UNET_HEAD_CHANNELS, "transformer_depth": depth,
              "context_dim": context, "use_linear_in_transformer": sd[mid + "proj_in.weight"].ndim == 2}
    original = {"model": {"params": {"unet_config": {"params": params},
                                     "first_stage_config": {"params": {"ddconfig": {"ch_mult": [1, 2, 4, 4]}}}}}}
    cfg = create_unet_diffusers_config_from_ldm(original, {})
    cfg["sample_size"] = 32
    return cfg


def load_unet(ledger: Ledger, ip_tokens: int = 0):
    """The UNet with its camera embedding (and, for ImageDream, image-prompt processors, filled in
    by ``load_image_prompt``). Returns (unet, config)."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    sd, what = ledger.sd, ledger.what
    cam = UNET + "camera_embed."
    if cam + "0.weight" not in sd:
        raise ModelLoadError(f"{what}: no camera embedding ('{cam}0.weight'): not a multi-view (MVDream / "
                             "ImageDream) checkpoint")
    ours = re.compile(r"\.(camera_embed|image_embed)\.|\.attn2\.to_[kv]_ip\.")
    core = {k: v for k, v in sd.items() if k.startswith(UNET) and not ours.search("." + k[len(UNET):])}
    cfg = unet_config(sd, what)
    converted = convert_ldm_unet_checkpoint(core, cfg)
    if len(converted) != len(core):  # the LDM -> diffusers UNet mapping is one to one
        raise ModelLoadError(f"{what}: the UNet has {len(core)} tensors, {len(converted)} convert "
                             f"(an architecture this loader does not know)")
    cfg.update(class_embed_type="projection", projection_class_embeddings_input_dim=sd[cam + "0.weight"].shape[1])
    unet = UNet2DConditionModel(**cfg)
    converted.update({"class_embedding.linear_1.weight": sd[cam + "0.weight"], "class_embedding.linear_1.bias":
                      need(sd, cam + "0.bias", what, "camera embedding"),
                      "class_embedding.linear_2.weight": need(sd, cam + "2.weight", what, "camera embedding"),
                      "class_embedding.linear_2.bias": need(sd, cam + "2.bias", what, "camera embedding")})
    load_strict(unet, converted, what, "UNet")
    ledger.take(core)
    ledger.take(cam + s for s in ("0.weight", "0.bias", "2.weight", "2.bias"))
    return unet, cfg


def ldm_attention_names(cfg: dict) -> dict:
    """diffusers attention module name -> LDM module name (``input_blocks.1.1.transformer_blocks.0``
    style) of every transformer block, following openaimodel's block numbering."""
    names = {}
    nres, depth = cfg["layers_per_block"], cfg["transformer_layers_per_block"]
    depth = depth if isinstance(depth, int) else depth[0]
    i = 1
    for level, kind in enumerate(cfg["down_block_types"]):
        for j in range(nres):
            if kind.startswith("CrossAttn"):
                for d in range(depth):
                    names[f"down_blocks.{level}.attentions.{j}.transformer_blocks.{d}"] = \
                        f"input_blocks.{i}.1.transformer_blocks.{d}"
            i += 1
        i += level != len(cfg["down_block_types"]) - 1
    for d in range(depth):
        names[f"mid_block.attentions.0.transformer_blocks.{d}"] = f"middle_block.1.transformer_blocks.{d}"
    i = 0
    for level, kind in enumerate(cfg["up_block_types"]):
        for j in range(nres + 1):
            if kind.startswith("CrossAttn"):
                for d in range(depth):
                    names[f"up_blocks.{level}.attentions.{j}.transformer_blocks.{d}"] = \
                        f"output_blocks.{i}.1.transformer_blocks.{d}"
            i += 1
    return names


def load_image_prompt(ledger: Ledger, unet, cfg: dict, added: dict):
    """ImageDream's ``to_k_ip`` / ``to_v_ip`` into the image-prompt processors ``added`` (by
    diffusers attention name)."""
    names = ldm_attention_names(cfg)
    for dname, proc in added.items():
        ldm = UNET + names[dname[:-len(".attn2")]] + ".attn2."
        state = {"to_k_ip.weight": need(ledger.sd, ldm + "to_k_ip.weight", ledger.what, "image prompt"),
                 "to_v_ip.weight": need(ledger.sd, ldm + "to_v_ip.weight", ledger.what, "image prompt")}
        load_strict(proc, state, ledger.what, f"image-prompt projection of {ldm[len(UNET):-1]}")
        ledger.take([ldm + "to_k_ip.weight", ldm + "to_v_ip.weight"])


def load_resampler(ledger: Ledger):
    """ImageDream's ``image_embed`` (sizes from its shapes; 64 channels per head, as published)."""
    from guidance.multiview import Resampler

    sd, what, p = ledger.sd, ledger.what, UNET + "image_embed."
    lat = need(sd, p + "latents", what, "image prompt resampler")
    dim = lat.shape[2]
    embedding_dim = need(sd, p + "proj_in.weight", what, "image prompt resampler").shape[1]
    output_dim = need(sd, p + "proj_out.weight", what, "image prompt resampler").shape[0]
    depth = len({k.split(".")[0] for k in (k[len(p + "layers."):] for k in sd if k.startswith(p + "layers."))})
    inner = need(sd, p + "layers.0.0.to_q.weight", what, "image prompt resampler").shape[0]
    ff = sd[p + "layers.0.1.1.weight"].shape[0] // dim
    r = Resampler(dim, depth, 64, inner // 64, lat.shape[1], embedding_dim, output_dim, ff)
    state = {k[len(p):]: v for k, v in sd.items() if k.startswith(p)}
    load_strict(r, state, what, "image prompt resampler")
    ledger.take(p + k for k in state)
    return r


# ------------------------------------------------------------------------------ VAE
def load_vae(ledger: Ledger, scaling_factor: float = 0.18215):
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint, create_vae_diffusers_config_from_ldm

    sd, what = ledger.sd, ledger.what
    part = {k: v for k, v in sd.items() if k.startswith(VAE)}
    ch = need(sd, VAE + "encoder.conv_in.weight", what, "VAE").shape[0]
    levels = sorted({int(k.split(".")[3]) for k in part if k.startswith(VAE + "encoder.down.")})
    mult = [need(sd, VAE + f"encoder.down.{i}.block.0.conv1.weight", what, "VAE").shape[0] // ch for i in levels]
    nres = len({k.split(".")[5] for k in part if k.startswith(VAE + "encoder.down.0.block.")})
    z = need(sd, VAE + "decoder.conv_in.weight", what, "VAE").shape[1]
    dd = {"ch": ch, "ch_mult": mult, "num_res_blocks": nres, "z_channels": z, "in_channels": 3, "out_ch": 3}
    original = {"model": {"params": {"scale_factor": scaling_factor, "first_stage_config": {"params": {"ddconfig": dd}}}}}
    cfg = create_vae_diffusers_config_from_ldm(original, {})
    cfg["sample_size"] = 256
    converted = convert_ldm_vae_checkpoint(part, cfg)
    if len(converted) != len(part):
        raise ModelLoadError(f"{what}: the VAE has {len(part)} tensors, {len(converted)} convert "
                             "(attention inside the resolution levels is not the SD autoencoder)")
    vae = AutoencoderKL(**cfg)
    load_strict(vae, converted, what, "VAE")
    ledger.take(part)
    return vae


# ------------------------------------------------------------------------------ OpenCLIP towers
def _blocks(sd: dict, prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})


def load_text_encoder(ledger: Ledger):
    """OpenCLIP's text tower as transformers' CLIPTextModel, penultimate layer (as the reference's
    ``FrozenOpenCLIPEmbedder(layer="penultimate")``: all blocks but the last, then ``ln_final``)."""
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel

    sd, what = ledger.sd, ledger.what
    vocab, width = need(sd, CLIP + "token_embedding.weight", what, "text encoder").shape
    n_ctx = need(sd, CLIP + "positional_embedding", what, "text encoder").shape[0]
    blocks = _blocks(sd, CLIP + "transformer.resblocks.")
    inter = need(sd, CLIP + "transformer.resblocks.0.mlp.c_fc.weight", what, "text encoder").shape[0]
    last = CLIP + f"transformer.resblocks.{blocks - 1}."
    unused = [k for k in sd if k.startswith(last)] + [k for k in (CLIP + "text_projection", CLIP + "logit_scale")
                                                      if k in sd]
    ledger.skip(unused, "penultimate text layer: the last block and the contrastive heads are not used")
    part = {k: v for k, v in sd.items() if k.startswith(CLIP) and not k.startswith(VISUAL) and k not in unused}
    cfg = CLIPTextConfig(vocab_size=vocab, hidden_size=width, intermediate_size=inter, num_hidden_layers=blocks - 1,
                         num_attention_heads=width // TEXT_HEAD_CHANNELS, max_position_embeddings=n_ctx,
                         hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=width)
    model = CLIPTextModel(cfg)
    converted = convert_open_clip_checkpoint(model, part)
    load_strict(model, library_names(model, converted, "text_model."), what, "text encoder")
    known = ("positional_embedding", "token_embedding.weight", "ln_final.weight", "ln_final.bias")
    ledger.take(k for k in part if k[len(CLIP):] in known or k.startswith(CLIP + "transformer.resblocks."))
    return model


def load_vision_encoder(ledger: Ledger):
    """OpenCLIP's vision tower as transformers' CLIPVisionModel with one block fewer, so that its
    ``last_hidden_state`` is the penultimate block's output (ImageDream's image-prompt features)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    sd, what, p = ledger.sd, ledger.what, VISUAL
    if p + "conv1.weight" not in sd:
        raise ModelLoadError(f"{what}: the file holds no OpenCLIP vision tower ('{p}conv1.weight'); set "
                             "imagedream_image_encoder=laion/CLIP-ViT-H-14-laion2B-s32B-b79K (the same tower, "
                             "transformers layout)")
    width, _, patch, _ = sd[p + "conv1.weight"].shape
    grid = int(round((need(sd, p + "positional_embedding", what, "vision tower").shape[0] - 1) ** 0.5))
    blocks = _blocks(sd, p + "transformer.resblocks.")
    inter = need(sd, p + "transformer.resblocks.0.mlp.c_fc.weight", what, "vision tower").shape[0]
    cfg = CLIPVisionConfig(hidden_size=width, intermediate_size=inter, num_hidden_layers=blocks - 1,
                           num_attention_heads=width // VISION_HEAD_CHANNELS, image_size=grid * patch,
                           patch_size=patch, hidden_act="gelu", layer_norm_eps=1e-5)
    model = CLIPVisionModel(cfg)
    last = p + f"transformer.resblocks.{blocks - 1}."
    ledger.skip([k for k in sd if k.startswith(last)] + [p + "proj"],
                "penultimate vision layer: the last block and the projection are not used")
    state = {"vision_model.embeddings.class_embedding": sd[p + "class_embedding"],
             "vision_model.embeddings.position_embedding.weight": sd[p + "positional_embedding"],
             "vision_model.embeddings.patch_embedding.weight": sd[p + "conv1.weight"]}
    used = [p + "class_embedding", p + "positional_embedding", p + "conv1.weight"]
    for ours, theirs in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for s in ("weight", "bias"):
            state[f"vision_model.{ours}.{s}"] = need(sd, p + f"{theirs}.{s}", what, "vision tower")
            used.append(p + f"{theirs}.{s}")
    names = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
             "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
    for i in range(blocks - 1):
        src, dst = p + f"transformer.resblocks.{i}.", f"vision_model.encoder.layers.{i}."
        for theirs, ours in names.items():
            for s in ("weight", "bias"):
                state[dst + f"{ours}.{s}"] = need(sd, src + f"{theirs}.{s}", what, "vision tower")
                used.append(src + f"{theirs}.{s}")
        for s in ("weight", "bias"):
            qkv = need(sd, src + f"attn.in_proj_{s}", what, "vision tower").chunk(3, 0)
            for name, t in zip(("q_proj", "k_proj", "v_proj"), qkv):
                state[dst + f"self_attn.{name}.{s}"] = t
            used.append(src + f"attn.in_proj_{s}")
    load_strict(model, library_names(model, state, "vision_model."), what, "vision tower")
    ledger.take(used)
    return model


# ------------------------------------------------------------------------------ schedule
def ddim_scheduler():
    """The DDIM scheduler of the reference's schedule (Stable Diffusion 2.1 base's values)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=TIMESTEPS, beta_start=LINEAR_START, beta_end=LINEAR_END,
                         beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                         prediction_type="epsilon")


def check_schedule(ledger: Ledger, scheduler):
    """The checkpoint's own schedule buffers (where present) must be the scheduler's."""
    sd, what = ledger.sd, ledger.what
    for name, ours in (("betas", scheduler.betas), ("alphas_cumprod", scheduler.alphas_cumprod)):
        if name in sd:
            theirs = sd[name].double()
            if theirs.shape != ours.shape or (theirs - ours.double()).abs().max() > 1e-5:
                raise ModelLoadError(f"{what}: its '{name}' is not the scaled-linear 0.00085 -> 0.012 schedule of "
                                     f"{TIMESTEPS} steps that the guidance uses")
            ledger.take([name])
    ledger.skip([k for k in SCHEDULE_BUFFERS if k in sd and k not in ledger.used],
                "derived from betas (which is checked)")


def load_external_vision(path: str, what: str):
    """OpenCLIP ViT-H/14's vision tower in transformers layout (a CLIPModel or CLIPVisionModel
    folder or hub id, e.g. ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``: its config.json and one weight
    file are fetched), for ImageDream files without one. Every vision weight must load."""
    from transformers import CLIPVisionModel

    quiet_libraries()
    folder = os.path.expanduser(str(path))
    if not os.path.isdir(folder) and not _looks_like_path(folder):
        def fetch(local_only):
            from huggingface_hub import list_repo_files, snapshot_download

            if local_only:
                return snapshot_download(folder, local_files_only=True)
            files = list_repo_files(folder)
            weights = next((f for f in ("model.safetensors", "pytorch_model.bin") if f in files), None)
            return snapshot_download(folder, allow_patterns=["config.json"] + ([weights] if weights else []))
        folder = from_hub(fetch, what, f"imagedream_image_encoder '{path}'", "download it where the hub is reachable "
                          "and set imagedream_image_encoder=/path/to/folder")
    else:
        folder = resolve_folder(folder, f"{what}: imagedream_image_encoder", "imagedream_image_encoder")
    try:
        model, info = CLIPVisionModel.from_pretrained(folder, output_loading_info=True, local_files_only=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise ModelLoadError(f"{what}: imagedream_image_encoder {folder} did not load as a CLIP vision model "
                             f"({type(e).__name__}: {msg})") from None
    missing = [k for k in info.get("missing_keys", []) if not k.endswith("position_ids")]
    if missing:
        raise ModelLoadError(f"{what}: imagedream_image_encoder {folder} lacks vision weight '{missing[0]}'")
    return model


# the parts' key prefixes as each project's own interface class names its modules:
# MVDream's LatentDiffusion: first_stage_model / cond_stage_model; ImageDream's
# LatentDiffusionInterface: vae_model / clip_model (the UNet is model.diffusion_model in both)
KEY_FAMILIES = {"MVDream": ("first_stage_model.", "cond_stage_model."), "ImageDream": ("vae_model.", "clip_model.")}


def key_family(sd: dict, what: str) -> str:
    """Which project's key names the file uses, from its own keys (never from its name)."""
    found = [name for name, prefixes in KEY_FAMILIES.items() if any(k.startswith(prefixes) for k in sd)]
    if len(found) != 1:
        names = "; ".join(f"{n}: {', '.join(p + '*' for p in ps)}" for n, ps in KEY_FAMILIES.items())
        raise ModelLoadError(f"{what}: the file's keys follow {'both' if found else 'neither'} of the known layouts "
                             f"({names}); is this an MVDream / ImageDream checkpoint?")
    return found[0]


def as_family(sd: dict, src: str, dst: str) -> dict:
    """``sd`` with family ``src``'s VAE / OpenCLIP prefixes renamed to family ``dst``'s."""
    if src == dst:
        return sd
    out = {}
    for k, v in sd.items():
        for a, b in zip(KEY_FAMILIES[src], KEY_FAMILIES[dst]):
            if k.startswith(a):
                k = b + k[len(a):]
                break
        out[k] = v
    return out


def load_multiview(sd: dict, what: str, image_prompt: bool, vision=None):
    """``load_parts`` on a file with either project's key names (``key_family``): they are read
    under MVDream's names, and every message names the keys as the file has them."""
    family = key_family(sd, what)
    try:
        parts, cfg, scheduler, count, ledger = load_parts(as_family(sd, family, "MVDream"), what, image_prompt, vision)
    except ModelLoadError as e:
        if family == "MVDream":
            raise
        msg = str(e)
        for a, b in zip(KEY_FAMILIES["MVDream"], KEY_FAMILIES[family]):
            msg = msg.replace(f"'{a}", f"'{b}")
        raise ModelLoadError(msg) from None
    if family != "MVDream":  # the ledger in the file's own names
        back = lambda k: next(iter(as_family({k: None}, "MVDream", family)))  # noqa: E731
        ledger.sd, ledger.used = sd, {back(k) for k in ledger.used}
        ledger.by_design = {back(k): why for k, why in ledger.by_design.items()}
    ledger.family = family
    return parts, cfg, scheduler, count, ledger


def load_parts(sd: dict, what: str, image_prompt: bool, vision=None):
    """All parts of an MVDream (``image_prompt=False``) or ImageDream checkpoint. Returns a dict of
    modules (vae, unet, text_encoder, [image_encoder, image_embed]), the UNet config, the
    scheduler, the frame counter and the ledger (what was used, what was left by design).
    ``vision``: an ImageDream vision tower loaded from elsewhere (``load_external_vision``), used
    instead of the file's (whose tensors, if any, are then left by design)."""
    from guidance.multiview import FrameCount, attach_multiview

    quiet_libraries()
    ledger = Ledger(sd, what)
    unet, cfg = load_unet(ledger)
    count = FrameCount(5 if image_prompt else 4)
    parts = {"unet": unet}
    if image_prompt:
        parts["image_embed"] = load_resampler(ledger)
        ip = {"context_dim": cfg["cross_attention_dim"], "tokens": parts["image_embed"].latents.shape[1],
              "weight": 1.0}
        load_image_prompt(ledger, unet, cfg, attach_multiview(unet, count, ip))
        if vision is None:
            parts["image_encoder"] = load_vision_encoder(ledger)
        else:
            width = parts["image_embed"].proj_in.in_features
            if vision.config.hidden_size != width:
                raise ModelLoadError(f"{what}: imagedream_image_encoder is {vision.config.hidden_size} wide, the "
                                     f"image-prompt resampler takes {width} (not OpenCLIP ViT-H/14?)")
            ledger.skip([k for k in sd if k.startswith(VISUAL)], "vision tower taken from imagedream_image_encoder")
            parts["image_encoder"] = vision
    else:
        attach_multiview(unet, count)
    ledger.require_all(UNET, "the UNet")
    parts["vae"] = load_vae(ledger)
    ledger.require_all(VAE, "the VAE")
    parts["text_encoder"] = load_text_encoder(ledger)
    ledger.require_all(CLIP, "the OpenCLIP encoder")
    scheduler = ddim_scheduler()
    check_schedule(ledger, scheduler)
    return parts, cfg, scheduler, count, ledger
