"""Render a turntable of a textured mesh: an .mp4 or .gif and a grid .png of views.

    python scripts/turntable.py logs/cat.obj --out logs/cat_turntable.gif [--frames 60 --size 512]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from io_utils import save_image  # noqa: E402
from mesh import Mesh  # noqa: E402
from mesh_renderer import turntable  # noqa: E402


def main(argv=None):
    from cli import COUNT_ARG, ELEVATION_ARG

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mesh")
    ap.add_argument("--out", help=".mp4 or .gif (default: <mesh>_turntable.gif)")
    ap.add_argument("--frames", type=COUNT_ARG, default=60)
    ap.add_argument("--size", type=COUNT_ARG, default=512)
    ap.add_argument("--elevation", type=ELEVATION_ARG, default=-15.0)
    ap.add_argument("--fps", type=COUNT_ARG, default=30)
    ap.add_argument("--grid", type=COUNT_ARG, default=8, help="views in the grid .png")
    args = ap.parse_args(argv)
    out = args.out or os.path.splitext(args.mesh)[0] + "_turntable.gif"
    if os.path.splitext(out)[1].lower() not in (".gif", ".mp4"):
        print(f"error: --out must end in .gif or .mp4, got {out}", file=sys.stderr)
        return 2
    if not os.path.isfile(args.mesh):
        print(f"error: mesh not found: {args.mesh}", file=sys.stderr)
        return 2
    from cli import error_line, user_errors

    try:
        mesh = Mesh.load(args.mesh)
    except user_errors() as e:  # an unreadable mesh: one line, no traceback
        print(error_line(e), file=sys.stderr)
        return 2
    for w in mesh.warnings:
        print(f"warning: {w}", file=sys.stderr)
    frames = turntable(mesh, args.frames, args.size, args.elevation)
    import imageio.v2 as imageio

    from io_utils import atomic_write
    from io_utils import OutputError

    if out.lower().endswith(".mp4"):
        try:
            atomic_write(out, lambda tmp: imageio.mimwrite(tmp, list(frames), fps=args.fps, format="FFMPEG"))
        except OutputError:
            raise
        except Exception as e:  # imageio-ffmpeg missing
            print(f"error: cannot write mp4 ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                  "pip install imageio-ffmpeg or use a .gif", file=sys.stderr)
            return 2
    else:
        atomic_write(out, lambda tmp: imageio.mimwrite(tmp, list(frames), format="GIF", duration=1000 / args.fps,
                                                       loop=0))
    idx = np.linspace(0, len(frames), args.grid, endpoint=False).astype(int)
    grid = np.concatenate(list(frames[idx]), 1)
    grid_path = os.path.splitext(out)[0] + "_grid.png"
    save_image(grid_path, grid)
    print(f"{out}\n{grid_path}")
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
