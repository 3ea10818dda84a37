"""Stage 2: refine the coarse mesh's texture with SDEdit-style MSE, export .obj/.glb.

    python main2.py --config configs/image.yaml input=data/name_rgba.png save_path=name
"""
import sys

from cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage(2))
