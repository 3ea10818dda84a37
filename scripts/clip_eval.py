"""CLIP similarity between the input image and renders of a mesh (the reference's metric).

    python scripts/clip_eval.py --image data/cat_rgba.png --mesh logs/cat.obj [--model openai/clip-vit-large-patch14]

The CLIP model loads like the guidance models: a hub id or a local folder (transformers layout);
offline without it, a one-line error says how to get it. Prints JSON with the mean cosine
similarity over ``--views`` renders around the object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    from cli import COUNT_ARG

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", required=True)
    ap.add_argument("--mesh", required=True)
    ap.add_argument("--model", default="openai/clip-vit-large-patch14")
    ap.add_argument("--views", type=COUNT_ARG, default=8)
    ap.add_argument("--size", type=COUNT_ARG, default=256)
    args = ap.parse_args(argv)
    from cli import error_line, user_errors
    from metrics import clip_similarity

    try:
        r = clip_similarity(args.image, args.mesh, args.model, args.views, args.size)
    except user_errors() as e:
        print(error_line(e), file=sys.stderr)
        return 2
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
