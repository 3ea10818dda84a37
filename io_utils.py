"""File helpers shared by every reader and writer: atomic writes, image I/O."""
from __future__ import annotations

import os
import tempfile

import numpy as np


def atomic_write(path: str, write_fn):
    """Call ``write_fn(tmp_path)`` and rename the result to ``path``: a crash never leaves a
    half-written file under the final name. Creates the parent folder."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp_", suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        write_fn(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_image(path: str, img: np.ndarray):
    """Save a float [H,W,C] image in [0,1] (or uint8) as PNG/JPG, atomically."""
    from PIL import Image

    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    atomic_write(path, lambda tmp: Image.fromarray(img).save(tmp, format="PNG" if path.endswith(".png") else None))


def load_image(path: str) -> np.ndarray:
    """Read an image as float32 [H,W,C] in [0,1] (C = 3 or 4)."""
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
        im.load()
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from None
    if im.mode not in ("RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
    return np.asarray(im, dtype=np.float32) / 255.0
