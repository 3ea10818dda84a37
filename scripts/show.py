"""Look at outputs in the browser: Gaussians (any splat format: .ply, .compressed.ply, .splat,
.spz, .sog, a splat .glb), meshes (.obj / .glb / any mesh trimesh reads) and runs
(<name>_run.json: its summary, and its Gaussians and final mesh), side by side in one scene.

    python scripts/show.py logs/cat_model.ply logs/cat.glb [--port 8080] [--host 127.0.0.1]
    python scripts/show.py logs/cat_run.json logs/dog_run.json

Each item sits in its own slot along x, with a label and a checkbox that shows or hides it.
Ctrl-C stops the server.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _terminate(signum, frame):  # SIGTERM stops the server like Ctrl-C
    raise KeyboardInterrupt


def main(argv=None):
    from cli import PORT_ARG

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", help="Gaussians (any splat format), meshes, or <name>_run.json files")
    ap.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to reach it from other machines")
    ap.add_argument("--port", type=PORT_ARG, default=8080)
    args = ap.parse_args(argv)
    from cli import error_line, user_errors
    from viewer import OutputViewer

    for p in args.paths:
        if not os.path.isfile(p):
            print(f"error: {p} is a folder; pass its files (e.g. {os.path.join(p, '*_model.ply')})" if os.path.isdir(p)
                  else f"error: not found: {p}", file=sys.stderr)
            return 2
    try:
        view = OutputViewer(args.paths, args.host, args.port, log=lambda m: print(m, flush=True))
    except user_errors() + (OSError,) as e:
        print(error_line(e), file=sys.stderr)
        return 2
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        view.close()
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    from cli import guarded

    sys.exit(guarded(main))
