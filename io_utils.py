"""File helpers shared by every reader and writer: atomic writes, JSON and image I/O."""
from __future__ import annotations

import os

import numpy as np


def atomic_write(path: str, write_fn):
    """Call ``write_fn(tmp_path)`` and rename the result to ``path``: a crash never leaves a
    half-written file under the final name. Creates the parent folder. An OS error (disk full,
    no permission, a folder in the way) is an ``outputs.OutputError`` naming the file."""
    from outputs import write_together

    write_together([(path, write_fn)])


def save_json(path: str, data, indent: int = 1):
    """``data`` as JSON at ``path``, atomically (a benchmark's results, a record)."""
    import json

    def write(tmp):
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=indent)
    atomic_write(path, write)


def require_file(path: str, what: str):
    """``path`` names an existing file: else FileNotFoundError ("WHAT not found: PATH") or, for a
    folder, IsADirectoryError ("PATH is a folder, not a WHAT"), both one-line user errors."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder, not a {what}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")


def image_writer(img: np.ndarray, fmt: str | None = "PNG"):
    """``write_fn(tmp)`` saving a float [H,W,C] image in [0,1] (or uint8)."""
    from PIL import Image

    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return lambda tmp: Image.fromarray(img).save(tmp, format=fmt)


def save_image(path: str, img: np.ndarray):
    """Save a float [H,W,C] image in [0,1] (or uint8) as PNG/JPG, atomically."""
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(os.path.splitext(path)[1].lower(), "PNG")
    atomic_write(path, image_writer(img, fmt))


def load_image(path: str) -> np.ndarray:
    """Read an image as float32 [H,W,C] in [0,1] (C = 3 or 4)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, not an image")
    try:
        im = Image.open(path)
        im.load()
    except FileNotFoundError:
        raise
    except Image.DecompressionBombError as e:  # PIL refuses images above 2x MAX_IMAGE_PIXELS
        import re

        size = re.search(r"\((\d+) pixels\)", str(e))
        raise ValueError(f"{path}: too large to read safely ({size.group(1) + ' pixels' if size else 'too many pixels'}"
                         f"; PIL refuses more than {2 * Image.MAX_IMAGE_PIXELS}); downscale it first") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from None
    im = ImageOps.exif_transpose(im)  # EXIF orientation applied, as image viewers show the image
    if im.mode not in ("RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
    return np.asarray(im, dtype=np.float32) / 255.0
