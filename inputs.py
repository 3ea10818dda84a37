"""Input images: RGBA loading, matting of RGB images (rembg), recentring, captions."""
from __future__ import annotations

import os

import numpy as np
import torch

from io_utils import load_image

MIN_INPUT_SIZE = 32  # smaller images carry too little to reconstruct from


class InputError(ValueError):
    """An input the user must fix (missing, not an image, unusable)."""


def remove_background(rgb: np.ndarray) -> np.ndarray:
    """Matte an RGB image [H,W,3] with rembg; returns RGBA [H,W,4] in [0,1]."""
    try:
        import rembg
    except ImportError:
        raise InputError("the input has no alpha channel and rembg is not installed: pass an RGBA image "
                         "(transparent background) or pip install rembg") from None
    try:
        session = rembg.new_session()
        out = rembg.remove((rgb * 255).astype(np.uint8), session=session)
    except Exception as e:  # the model download fails offline
        raise InputError(f"could not matte the RGB input with rembg ({type(e).__name__}): pass an RGBA image, or "
                         "pre-download the matting model (run rembg once with network access)") from None
    return np.asarray(out, np.float32) / 255.0


def recenter(rgba: np.ndarray, size: int, border_ratio: float) -> np.ndarray:
    """Crop to the object's bounding box, scale it to fill (1 - border_ratio) of a ``size`` square
    and centre it; returns RGBA [size,size,4]."""
    import cv2

    mask = rgba[..., 3] > 0.5
    if not mask.any():
        raise InputError("the input image's alpha channel is empty: no object to reconstruct")
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = rgba[y0:y1, x0:x1]
    h, w = crop.shape[:2]
    target = int(size * (1 - border_ratio))
    scale = target / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    crop = cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_AREA)
    out = np.zeros((size, size, 4), np.float32)
    oy, ox = (size - nh) // 2, (size - nw) // 2
    out[oy:oy + nh, ox:ox + nw] = crop
    return out


OPAQUE = 254.5 / 255  # an alpha channel whose minimum reaches this has no background
SEMI_TRANSPARENT = 0.9  # an object whose alpha never reaches this was saved with reduced opacity


def check_alpha(img: np.ndarray, path: str, warnings: list) -> np.ndarray:
    """Judge the alpha channel of an RGBA image as a whole, not pixel by pixel against a fixed 0.5:
    fully opaque -> a warning (the whole rectangle would be the object); an object that is
    semi-transparent everywhere (its alpha peaks below SEMI_TRANSPARENT) -> alpha rescaled by its
    own maximum, with a warning; no alpha at all -> InputError."""
    alpha = img[..., 3]
    top = float(alpha.max())
    if top < 1.5 / 255:
        raise InputError(f"{path}: the alpha channel is empty (fully transparent): no object to reconstruct")
    if float(alpha.min()) >= OPAQUE:
        warnings.append(f"{path}: the alpha channel is fully opaque, so the whole {img.shape[1]}x{img.shape[0]} "
                        f"rectangle is taken as the object; remove the background first (python process.py "
                        f"{path}, which mattes with rembg)")
    elif top < SEMI_TRANSPARENT:
        warnings.append(f"{path}: the object is semi-transparent everywhere (alpha at most {top:.2f}); its alpha is "
                        f"scaled by 1/{top:.2f} so that it counts as opaque")
        img = img.copy()
        img[..., 3] = np.clip(alpha / top, 0, 1)
    return img


def load_input_image(path: str, size: int, do_recenter: bool = True, border_ratio: float = 0.2,
                     warnings: list | None = None):
    """Load the reference view: (rgb [3,S,S] premultiplied-free colour, mask [1,S,S]) in [0,1].

    RGBA images are used as they are (see ``check_alpha``; what it had to guess is appended to
    ``warnings``); RGB images are matted with rembg; grayscale images are expanded to RGB first;
    EXIF orientation is applied.
    """
    import cv2

    warnings = [] if warnings is None else warnings
    if not path:
        raise InputError("no input given: set input=path/to/image_rgba.png")
    if os.path.isdir(path):
        raise InputError(f"input {path} is a folder; image mode takes one image (scripts/batch.py runs a folder)")
    if not os.path.isfile(path):
        raise InputError(f"input image not found: {path}")
    try:
        img = load_image(path)
    except ValueError as e:
        raise InputError(str(e)) from None
    h, w = img.shape[:2]
    if min(h, w) < MIN_INPUT_SIZE:
        raise InputError(f"input image {path} is {w}x{h}; at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} is needed")
    if img.shape[2] == 3:
        img = remove_background(img)
    img = check_alpha(img, path, warnings)
    if do_recenter:
        img = recenter(img, size, border_ratio)
    else:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
    return t[:3].clone(), t[3:].clone()


def read_caption(image_path: str) -> str | None:
    """The prompt in ``<name>_caption.txt`` beside ``<name>_rgba.png`` (or ``<name>.png``), if any."""
    base = os.path.splitext(image_path)[0]
    for cand in (base.replace("_rgba", "") + "_caption.txt", base + "_caption.txt"):
        if os.path.isfile(cand):
            with open(cand) as fh:
                text = fh.read().strip()
            return text or None
    return None
