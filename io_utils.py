"""File helpers shared by every reader and writer: atomic writes, JSON and image I/O.

- ``write_together``: the files of one output (``.obj`` + ``.mtl`` + ``_albedo.png``) are written
  under temporary names first and renamed only when all of them are complete: published whole or
  not at all. An OS error (disk full, permission, a folder in the way) is one ``OutputError`` line
  naming the file and the reason. ``atomic_write``, ``save_json`` and ``save_image`` write one file so.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np


class OutputError(RuntimeError):
    """An output that cannot be written, or outputs that do not belong together."""


def reason(e: OSError) -> str:
    return e.strerror or type(e).__name__


def _write(tmp: str, write_fn):
    """One file's bytes (a seam for tests that simulate a full disk where no tmpfs can be mounted)."""
    write_fn(tmp)


def write_together(items):
    """``items``: [(path, write_fn)], each ``write_fn(tmp_path)`` writing one file. All files are
    written to temporary names beside their targets, then renamed in the given order (put the
    file that names the others, e.g. the ``.obj``, last). On any failure no target is touched and
    every temporary file is removed."""
    temps = []
    current = items[0][0] if items else ""
    try:
        for path, write_fn in items:
            current = path
            folder = os.path.dirname(os.path.abspath(path))
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=os.path.splitext(path)[1])
            os.close(fd)
            temps.append((tmp, path))
            _write(tmp, write_fn)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        for tmp, path in temps:
            current = path
            if os.path.isdir(path):
                raise IsADirectoryError(21, "a folder is in the way", path)
            os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"cannot write {current}: {reason(e)}") from None
    finally:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                try:
                    os.remove(tmp)
                except OSError:
                    pass


def atomic_write(path: str, write_fn):
    """Call ``write_fn(tmp_path)`` and rename the result to ``path``: a crash never leaves a
    half-written file under the final name. Creates the parent folder. An OS error (disk full,
    no permission, a folder in the way) is an ``OutputError`` naming the file."""
    write_together([(path, write_fn)])


def bytes_writer(data: bytes):
    """``write_fn(tmp)`` writing ``data`` as it is (for ``atomic_write`` / ``write_together``)."""
    def write(tmp):
        with open(tmp, "wb") as fh:
            fh.write(data)
    return write


def text_writer(text: str):
    """``write_fn(tmp)`` writing ``text`` (for ``atomic_write`` / ``write_together``)."""
    def write(tmp):
        with open(tmp, "w") as fh:
            fh.write(text)
    return write


def save_json(path: str, data, indent: int = 1):
    """``data`` as JSON at ``path``, atomically (a benchmark's results, a record)."""
    import json

    atomic_write(path, text_writer(json.dumps(data, indent=indent)))


def load_json(path: str):
    """The JSON document at ``path``."""
    import json

    with open(path) as fh:
        return json.load(fh)


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


def load_image(path: str, notes: list | None = None) -> np.ndarray:
    """Read an image as float32 [H,W,C] in [0,1] (C = 3 or 4). An image above PIL's safe-read size
    (``Image.MAX_IMAGE_PIXELS``) is read with a one-line warning, appended to ``notes`` where given
    (the run logs it and keeps it in run.json), else printed; one above twice that is refused."""
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, not an image")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
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
    for w in caught:
        if not issubclass(w.category, Image.DecompressionBombWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
            continue
        note = (f"{path} is {im.width}x{im.height} ({im.width * im.height / 1e6:.0f} megapixels, above the "
                f"{Image.MAX_IMAGE_PIXELS / 1e6:.0f} PIL reads without a warning): read whole, then resized; "
                f"downscale it first to save memory and time")
        if notes is None:
            import sys

            print(f"warning: {note}", file=sys.stderr, flush=True)
        elif note not in notes:
            notes.append(note)
    im = ImageOps.exif_transpose(im)  # EXIF orientation applied, as image viewers show the image
    if im.mode not in ("RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
    return np.asarray(im, dtype=np.float32) / 255.0
