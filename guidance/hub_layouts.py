"""Checkpoint folders in the exact layouts published on the hub, built from their specification.

Nothing here is saved by our own classes: ``model_index.json`` and every ``config.json`` are
written by hand with the contents of the public repositories (``ashawkey/zero123-xl-diffusers``,
``ashawkey/stable-zero123-diffusers``, kxic's zero1to3 conversion, ``stabilityai/stable-diffusion-2-1-base``),
and the weights are plain state dicts with the published key names and shapes, written with
safetensors or ``torch.save`` (.bin, as older exports). Library components (VAE, UNet, CLIP) get
their key layout from the library classes that define it, built from those configs; the camera
projection, which exists in no library, is written key by key.

``size="tiny"`` shrinks widths and depths for the CPU tests; ``size="full"`` is the published
architecture (random weights) for benchmarks and scripts/gpu_check.py.
"""
from __future__ import annotations

import os

import torch

from io_utils import save_json

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _save_weights(sd: dict, folder: str, stem: str, fmt: str):
    os.makedirs(folder, exist_ok=True)
    sd = {k: v.detach().contiguous().clone() for k, v in sd.items()}
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(sd, os.path.join(folder, f"{stem}.safetensors"))
    else:
        names = {"diffusion_pytorch_model": "diffusion_pytorch_model", "model": "pytorch_model"}
        torch.save(sd, os.path.join(folder, f"{names[stem]}.bin"))


# ------------------------------------------------------------------------ configs (as published)
def vae_config(size):
    cfg = {"_class_name": "AutoencoderKL", "_diffusers_version": "0.19.0", "act_fn": "silu",
           "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
           "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
           "sample_size": 256, "scaling_factor": 0.18215, "up_block_types": ["UpDecoderBlock2D"] * 4}
    if size == "tiny":
        cfg.update(block_out_channels=[8, 8, 8, 8], layers_per_block=1, norm_num_groups=8)
    return cfg


def zero123_unet_config(size):
    """Zero123-XL / Stable-Zero123: the SD 1.x UNet with 8 input channels (latents + input view)."""
    cfg = {"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.19.0", "act_fn": "silu",
           "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False,
           "cross_attention_dim": 768, "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
           "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 8,
           "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32,
           "out_channels": 4, "sample_size": 32, "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3}
    if size == "tiny":
        cfg.update(attention_head_dim=4, block_out_channels=[16, 32], cross_attention_dim=32,
                   down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"], layers_per_block=1, norm_num_groups=8,
                   up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"])
    return cfg


def sd21_unet_config(size):
    cfg = zero123_unet_config("full")
    cfg.update(attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024, in_channels=4, sample_size=64,
               use_linear_projection=True, _diffusers_version="0.10.0.dev0")
    if size == "tiny":
        cfg.update(attention_head_dim=[2, 4], block_out_channels=[16, 32], cross_attention_dim=32,
                   down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"], layers_per_block=1, norm_num_groups=8,
                   up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"])
    return cfg


def clip_vision_config(size):
    """openai/clip-vit-large-patch14's vision tower with its 768-d projection."""
    cfg = {"architectures": ["CLIPVisionModelWithProjection"], "attention_dropout": 0.0, "dropout": 0.0,
           "hidden_act": "quick_gelu", "hidden_size": 1024, "image_size": 224, "initializer_factor": 1.0,
           "initializer_range": 0.02, "intermediate_size": 4096, "layer_norm_eps": 1e-05,
           "model_type": "clip_vision_model", "num_attention_heads": 16, "num_channels": 3, "num_hidden_layers": 24,
           "patch_size": 14, "projection_dim": 768, "torch_dtype": "float32", "transformers_version": "4.31.0"}
    if size == "tiny":
        cfg.update(hidden_size=32, image_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                   patch_size=8, projection_dim=32)
    return cfg


def clip_image_processor_config(size):
    """preprocessor_config.json as older exports wrote it (integer size / crop_size)."""
    side = 224 if size == "full" else 32
    return {"crop_size": side, "do_center_crop": True, "do_normalize": True, "do_resize": True,
            "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
            "resample": 3, "size": side}


def ddim_config():
    return {"_class_name": "DDIMScheduler", "_diffusers_version": "0.19.0", "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
            "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": False, "steps_offset": 1,
            "trained_betas": None}


def pndm_config():
    """stable-diffusion-2-1-base's scheduler/scheduler_config.json."""
    return {"_class_name": "PNDMScheduler", "_diffusers_version": "0.10.0.dev0", "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
            "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": False,
            "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None}


# ------------------------------------------------------------------------ state dicts
def _diffusers_state_dict(cls_name, cfg):
    import diffusers

    cls = getattr(diffusers, cls_name)
    return cls.from_config({k: v for k, v in cfg.items() if not k.startswith("_")}).state_dict()


def legacy_vae_attention_names(sd: dict) -> dict:
    """VAE attention keys as diffusers < 0.14 saved them (query/key/value/proj_attn), which older
    checkpoints on the hub still carry."""
    out = {}
    for k, v in sd.items():
        for new, old in ((".to_q.", ".query."), (".to_k.", ".key."), (".to_v.", ".value."), (".to_out.0.", ".proj_attn.")):
            if ".attentions." in k and new in k:
                k = k.replace(new, old)
        out[k] = v
    return out


def _write_vae(path, size, fmt, legacy=False):
    cfg = vae_config(size)
    sd = _diffusers_state_dict("AutoencoderKL", cfg)
    save_json(os.path.join(path, "vae", "config.json"), cfg)
    _save_weights(legacy_vae_attention_names(sd) if legacy else sd, os.path.join(path, "vae"),
                  "diffusion_pytorch_model", fmt)


def _write_unet(path, cfg, fmt):
    save_json(os.path.join(path, "unet", "config.json"), cfg)
    _save_weights(_diffusers_state_dict("UNet2DConditionModel", cfg), os.path.join(path, "unet"),
                  "diffusion_pytorch_model", fmt)


def _write_clip_vision(path, size, fmt):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = clip_vision_config(size)
    sd = dict(CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg)).state_dict())
    n_pos = (cfg["image_size"] // cfg["patch_size"]) ** 2 + 1
    sd["vision_model.embeddings.position_ids"] = torch.arange(n_pos)[None]  # older exports saved this buffer
    save_json(os.path.join(path, "image_encoder", "config.json"), cfg)
    _save_weights(sd, os.path.join(path, "image_encoder"), "model", fmt)
    save_json(os.path.join(path, "feature_extractor", "preprocessor_config.json"), clip_image_processor_config(size))


def _write_projection(path, layout, emb, fmt, generator):
    """The camera projection, key by key: a Linear (emb + 4) -> emb."""
    w = torch.randn(emb, emb + 4, generator=generator) * (emb + 4) ** -0.5
    b = torch.randn(emb, generator=generator) * 0.01
    if layout == "ashawkey":
        save_json(os.path.join(path, "clip_camera_projection", "config.json"),
                  {"_class_name": "CLIPCameraProjection", "_diffusers_version": "0.19.0", "embedding_dim": emb,
                   "additional_embeddings": 4})
        _save_weights({"proj.weight": w, "proj.bias": b}, os.path.join(path, "clip_camera_projection"),
                      "diffusion_pytorch_model", fmt)
    else:
        save_json(os.path.join(path, "cc_projection", "config.json"),
                  {"_class_name": "CCProjection", "_diffusers_version": "0.16.0", "in_channel": emb + 4,
                   "out_channel": emb})
        _save_weights({"projection.weight": w, "projection.bias": b}, os.path.join(path, "cc_projection"),
                      "diffusion_pytorch_model", fmt)


def build_zero123(path, layout="ashawkey", fmt="safetensors", size="tiny", seed=0):
    """A Zero123 folder: ``layout`` ashawkey (Zero123Pipeline + clip_camera_projection) or
    community (cc_projection); ``fmt`` safetensors or bin (with the legacy VAE attention names)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    _write_vae(path, size, fmt, legacy=fmt == "bin")
    _write_unet(path, zero123_unet_config(size), fmt)
    _write_clip_vision(path, size, fmt)
    _write_projection(path, layout, clip_vision_config(size)["projection_dim"], fmt, g)
    save_json(os.path.join(path, "scheduler", "scheduler_config.json"), ddim_config())
    index = {"_class_name": "Zero123Pipeline", "_diffusers_version": "0.19.0.dev0",
             "feature_extractor": ["transformers", "CLIPImageProcessor"],
             "image_encoder": ["transformers", "CLIPVisionModelWithProjection"], "requires_safety_checker": False,
             "safety_checker": [None, None], "scheduler": ["diffusers", "DDIMScheduler"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    if layout == "ashawkey":
        index["clip_camera_projection"] = ["zero123", "CLIPCameraProjection"]
    else:
        index.update(_class_name="Zero1to3StableDiffusionPipeline", cc_projection=["pipeline_zero1to3", "CCProjection"])
    save_json(os.path.join(path, "model_index.json"), index)
    return path


# ------------------------------------------------------------------------ Stable Diffusion 2.1 base
def byte_level_vocab() -> dict:
    """A CLIP BPE vocabulary with no merges: every byte is a token (GPT-2's byte-to-unicode map)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    chars = [chr(c) for c in cs]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


def write_clip_tokenizer(folder) -> int:
    """tokenizer/ of stable-diffusion-2-1-base's form (vocab.json, merges.txt, tokenizer_config.json,
    special_tokens_map.json), with a byte-level vocabulary. Returns the vocabulary size."""
    vocab = byte_level_vocab()
    save_json(os.path.join(folder, "vocab.json"), vocab)
    with open(os.path.join(folder, "merges.txt"), "w") as fh:
        fh.write("#version: 0.2\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "!",
               "unk_token": "<|endoftext|>"}
    save_json(os.path.join(folder, "special_tokens_map.json"), special)
    save_json(os.path.join(folder, "tokenizer_config.json"),
              {"add_prefix_space": False, "do_lower_case": True, "errors": "replace", "model_max_length": 77,
               "tokenizer_class": "CLIPTokenizer", **special})
    return len(vocab)


def text_encoder_config(size, vocab):
    """stable-diffusion-2-1-base's text_encoder/config.json (OpenCLIP-H text tower, 23 layers)."""
    cfg = {"architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0,
           "eos_token_id": 2, "hidden_act": "gelu", "hidden_size": 1024, "initializer_factor": 1.0,
           "initializer_range": 0.02, "intermediate_size": 4096, "layer_norm_eps": 1e-05,
           "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 16,
           "num_hidden_layers": 23, "pad_token_id": 1, "projection_dim": 512, "torch_dtype": "float32",
           "transformers_version": "4.25.0.dev0", "vocab_size": 49408}
    if size == "tiny":
        cfg.update(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, vocab_size=vocab,
                   projection_dim=32)
    return cfg


def build_sd(path, fmt="safetensors", size="tiny", seed=0):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    vocab = write_clip_tokenizer(os.path.join(path, "tokenizer"))
    _write_vae(path, size, fmt, legacy=fmt == "bin")
    _write_unet(path, sd21_unet_config(size), fmt)
    cfg = text_encoder_config(size, vocab)
    # the published key names carry the ``text_model.`` prefix (transformers 5 itself saves without it)
    sd = {(k if k.startswith("text_model.") else "text_model." + k): v
          for k, v in CLIPTextModel(CLIPTextConfig(**cfg)).state_dict().items()}
    sd["text_model.embeddings.position_ids"] = torch.arange(77)[None]
    save_json(os.path.join(path, "text_encoder", "config.json"), cfg)
    _save_weights(sd, os.path.join(path, "text_encoder"), "model", fmt)
    save_json(os.path.join(path, "scheduler", "scheduler_config.json"), pndm_config())
    save_json(os.path.join(path, "feature_extractor", "preprocessor_config.json"), clip_image_processor_config("full"))
    save_json(os.path.join(path, "model_index.json"),
                {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.10.0.dev0",
                 "feature_extractor": ["transformers", "CLIPImageProcessor"], "requires_safety_checker": False,
                 "safety_checker": [None, None], "scheduler": ["diffusers", "PNDMScheduler"],
                 "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
                 "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]})
    return path
