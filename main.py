"""Stage 1: optimise 3D Gaussians, export the Gaussians (.ply) and a coarse textured mesh.

    python main.py --config configs/image.yaml input=data/name_rgba.png save_path=name
"""
import sys

from cli import guarded, run_stage

if __name__ == "__main__":
    sys.exit(guarded(lambda: run_stage(1)))
