"""Tiny randomly-initialised diffusion checkpoints in diffusers layout, built in code."""
import json
import os

import torch


def tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
                         block_out_channels=(8, 8, 8, 8), sample_size=64,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)


def tiny_unet(in_channels, cross_dim, sample_size):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=sample_size, in_channels=in_channels, out_channels=4, layers_per_block=1,
                                block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=cross_dim,
                                attention_head_dim=4, norm_num_groups=8)


def tiny_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False)


def build_zero123(path, seed=0):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from guidance.zero123 import CCProjection

    torch.manual_seed(seed)
    tiny_vae().save_pretrained(os.path.join(path, "vae"))
    tiny_unet(8, 32, 32).save_pretrained(os.path.join(path, "unet"))
    enc = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4,
                                                         num_hidden_layers=2, image_size=32, patch_size=8,
                                                         projection_dim=32))
    enc.save_pretrained(os.path.join(path, "image_encoder"))
    CCProjection(36, 32).save_pretrained(os.path.join(path, "clip_camera_projection"))
    tiny_scheduler().save_pretrained(os.path.join(path, "scheduler"))
    json.dump({"_class_name": "Zero123Pipeline", "_diffusers_version": "0.27.0"}, open(os.path.join(path, "model_index.json"), "w"))
    return path


def tiny_clip_tokenizer(path):
    """A byte-level CLIP BPE tokenizer with no merges: every character is a token."""
    from transformers import CLIPTokenizer

    # GPT-2 / CLIP byte-to-unicode map: printable bytes map to themselves, the rest to 256+
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
    os.makedirs(path, exist_ok=True)
    json.dump(vocab, open(os.path.join(path, "vocab.json"), "w"))
    open(os.path.join(path, "merges.txt"), "w").write("#version: 0.2\n")
    tok = CLIPTokenizer(os.path.join(path, "vocab.json"), os.path.join(path, "merges.txt"), model_max_length=77)
    tok.save_pretrained(path)
    return len(vocab)


def build_sd(path, seed=0):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    vocab = tiny_clip_tokenizer(os.path.join(path, "tokenizer"))
    tiny_vae().save_pretrained(os.path.join(path, "vae"))
    tiny_unet(4, 32, 64).save_pretrained(os.path.join(path, "unet"))
    CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                                 vocab_size=vocab, max_position_embeddings=77, bos_token_id=vocab - 2,
                                 eos_token_id=vocab - 1, pad_token_id=vocab - 1)).save_pretrained(
        os.path.join(path, "text_encoder"))
    tiny_scheduler().save_pretrained(os.path.join(path, "scheduler"))
    json.dump({"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.27.0"},
              open(os.path.join(path, "model_index.json"), "w"))
    return path
