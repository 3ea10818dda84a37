"""CLIP similarity between the input image and renders of a mesh (the reference's metric).

    python scripts/clip_eval.py --image data/cat_rgba.png --mesh logs/cat.obj [--model openai/clip-vit-large-patch14]

The CLIP model loads like the guidance models: a hub id or a local folder (transformers layout);
offline without it, a one-line error says how to get it. Prints JSON with the mean cosine
similarity over ``--views`` renders around the object.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_clip(model: str):
    from guidance.loading import ModelLoadError, quiet_libraries, resolve_folder

    quiet_libraries()  # before the import: transformers announces its torchvision fallback there
    from transformers import CLIPImageProcessor, CLIPModel

    folder = resolve_folder(model, "CLIP model", "--model")
    try:
        return CLIPModel.from_pretrained(folder).eval(), CLIPImageProcessor.from_pretrained(folder)
    except Exception as e:
        raise ModelLoadError(f"CLIP model '{model}': {folder} did not load ({type(e).__name__})") from None


@torch.no_grad()
def embed(model, processor, images):
    """images: list of [H,W,3] float arrays in [0,1] -> unit embeddings [N,D]."""
    import numpy as np

    batch = processor(images=[(np.clip(i, 0, 1) * 255).astype(np.uint8) for i in images], return_tensors="pt")
    feats = model.get_image_features(pixel_values=batch["pixel_values"])
    if not torch.is_tensor(feats):  # newer transformers return a model output
        feats = feats.pooler_output if getattr(feats, "pooler_output", None) is not None else feats[0]
    return torch.nn.functional.normalize(feats, dim=-1)


def clip_similarity(image_path, mesh_path, model="openai/clip-vit-large-patch14", views=8, size=256):
    from inputs import load_input_image
    from mesh import Mesh
    from mesh_renderer import turntable

    m, p = load_clip(model)
    rgb, mask = load_input_image(image_path, size)
    ref = (rgb * mask + (1 - mask)).permute(1, 2, 0).numpy()
    frames = turntable(Mesh.load(mesh_path), views, size).astype("float32") / 255
    e_ref = embed(m, p, [ref])
    e = embed(m, p, list(frames))
    sims = (e @ e_ref.T)[:, 0]
    return {"clip_similarity": float(sims.mean()), "per_view": [round(float(s), 4) for s in sims]}


def main(argv=None):
    from cli import COUNT

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", required=True)
    ap.add_argument("--mesh", required=True)
    ap.add_argument("--model", default="openai/clip-vit-large-patch14")
    ap.add_argument("--views", type=COUNT, default=8)
    ap.add_argument("--size", type=COUNT, default=256)
    args = ap.parse_args(argv)
    from cli import error_line, user_errors

    try:
        r = clip_similarity(args.image, args.mesh, args.model, args.views, args.size)
    except user_errors() as e:
        print(error_line(e), file=sys.stderr)
        return 2
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from cli import guarded

    sys.exit(guarded(main))
