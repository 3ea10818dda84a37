"""Stage 2: refine the coarse mesh's texture with SDEdit-style MSE, export .obj/.glb.

    python main2.py --config configs/image.yaml input=data/name_rgba.png save_path=name
"""
import sys

from cli import guarded, run_stage

if __name__ == "__main__":
    sys.exit(guarded(lambda: run_stage(2)))
