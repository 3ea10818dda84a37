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


def object_box(rgba: np.ndarray, path: str = "the input image") -> tuple:
    """(y0, y1, x0, x1) of the pixels whose alpha exceeds 0.5."""
    mask = rgba[..., 3] > 0.5
    if not mask.any():
        raise InputError(f"{path}: the alpha channel is empty (nothing above 0.5): no object to reconstruct")
    ys, xs = np.nonzero(mask)
    return ys.min(), ys.max() + 1, xs.min(), xs.max() + 1


def recenter(rgba: np.ndarray, size: int, border_ratio: float, box: tuple | None = None) -> np.ndarray:
    """Crop to the object's bounding box (or ``box``, (y0, y1, x0, x1): several views share one),
    scale it to fill (1 - border_ratio) of a ``size`` square and centre it; returns RGBA
    [size,size,4]."""
    import cv2

    y0, y1, x0, x1 = box if box is not None else object_box(rgba)
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


def _check_path(path: str):
    if not path:
        raise InputError("no input given: set input=path/to/image_rgba.png")
    if os.path.isdir(path):
        raise InputError(f"input {path} is a folder; image mode takes one image, or a list of views "
                         "(input=[a.png,b.png] input_azimuths=[0,180]); scripts/batch.py runs a folder")
    if not os.path.isfile(path):
        raise InputError(f"input image not found: {path}")


def _read_rgba(path: str, warnings: list) -> np.ndarray:
    """The RGBA image [H,W,4] in [0,1] of one input (matted, alpha judged), at its own size."""
    _check_path(path)
    try:
        img = load_image(path, warnings)
    except ValueError as e:
        raise InputError(str(e)) from None
    h, w = img.shape[:2]
    if min(h, w) < MIN_INPUT_SIZE:
        raise InputError(f"input image {path} is {w}x{h}; at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} is needed")
    if img.shape[2] == 3:
        img = remove_background(img)
    return check_alpha(img, path, warnings)


def _to_tensors(img: np.ndarray):
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
    return t[:3].clone(), t[3:].clone()


def load_input_image(path: str, size: int, do_recenter: bool = True, border_ratio: float = 0.2,
                     warnings: list | None = None):
    """Load the reference view: (rgb [3,S,S] premultiplied-free colour, mask [1,S,S]) in [0,1].

    RGBA images are used as they are (see ``check_alpha``; what it had to guess is appended to
    ``warnings``); RGB images are matted with rembg; grayscale images are expanded to RGB first;
    EXIF orientation is applied.
    """
    return load_input_views([path], size, do_recenter, border_ratio, warnings)[0]


def input_paths(value) -> list:
    """The image paths of config key ``input``: one path, or a list of them (several views)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [str(v) for v in value]
    return [str(value)] if str(value) else []


def view_angles(n: int, azimuths, elevations, elevation: float) -> list:
    """(azimuth, elevation) in degrees of each of ``n`` input views: ``azimuths`` relative to the
    first view (0), in the orbit convention of cameras.orbit_camera; ``elevations`` default to
    ``elevation`` for every view. A one-line InputError for a count mismatch, a first azimuth other
    than 0, or two views at one angle."""
    azimuths = [float(a) for a in (azimuths or [])]
    elevations = [float(e) for e in (elevations or [])]
    if n > 1 and not azimuths:
        raise InputError(f"{n} input images need input_azimuths, one angle per image in degrees, the first 0 "
                         f"(e.g. input_azimuths=[{','.join(str(90 * i) for i in range(n))}])")
    if azimuths and len(azimuths) != n:
        raise InputError(f"{n} input image{'s' if n > 1 else ''} but {len(azimuths)} input_azimuths "
                         f"({azimuths}): give one angle per image")
    if elevations and len(elevations) != n:
        raise InputError(f"{n} input image{'s' if n > 1 else ''} but {len(elevations)} input_elevations "
                         f"({elevations}): give one per image, or none (every view at elevation={elevation})")
    azimuths = azimuths or [0.0] * n
    if azimuths and azimuths[0] % 360:
        raise InputError(f"input_azimuths[0] is {azimuths[0]:g}; the angles are relative to the first image, "
                         "whose azimuth is 0")
    elevations = elevations or [float(elevation)] * n
    angles = list(zip(azimuths, elevations))
    for j in range(n):
        for i in range(j):
            same_az = abs((angles[i][0] - angles[j][0] + 180) % 360 - 180) < 1e-6
            if same_az and abs(angles[i][1] - angles[j][1]) < 1e-6:
                raise InputError(f"input views {i} and {j} are both at azimuth {angles[j][0]:g}, elevation "
                                 f"{angles[j][1]:g}: each view needs its own angle")
    return angles


def load_input_views(paths: list, size: int, do_recenter: bool = True, border_ratio: float = 0.2,
                     warnings: list | None = None) -> list:
    """Several views of one object: [(rgb [3,S,S], mask [1,S,S])] as ``load_input_image`` loads
    one, treated alike. Every view must have the first one's aspect (they are resized to its
    size). Recentring is done once for all: the union of the views' object boxes is cropped and
    scaled to fill (1 - border_ratio) of the square in every view, so that the object keeps one
    scale and centre across them (views taken at one distance with one lens, as a turntable or
    renders; with one view this is the single-image recentring). Without recentring every view is
    resized as it is."""
    import cv2

    warnings = [] if warnings is None else warnings
    if not paths:
        _check_path("")
    imgs = [_read_rgba(p, warnings) for p in paths]
    h0, w0 = imgs[0].shape[:2]
    for p, img in zip(paths[1:], imgs[1:]):
        h, w = img.shape[:2]
        if abs(w / h - w0 / h0) > 0.01 * (w0 / h0):
            raise InputError(f"input views differ in aspect: {paths[0]} is {w0}x{h0}, {p} is {w}x{h}; the views "
                             "must come from one camera (same aspect)")
    imgs = [img if img.shape[:2] == (h0, w0) else cv2.resize(img, (w0, h0), interpolation=cv2.INTER_AREA)
            for img in imgs]
    boxes = [object_box(img, p) for p, img in zip(paths, imgs)]
    if do_recenter:
        box = (min(b[0] for b in boxes), max(b[1] for b in boxes), min(b[2] for b in boxes), max(b[3] for b in boxes))
        imgs = [recenter(img, size, border_ratio, box) for img in imgs]
    else:
        imgs = [cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA) for img in imgs]
    return [_to_tensors(img) for img in imgs]


def read_caption(image_path) -> str | None:
    """The prompt in ``<name>_caption.txt`` beside ``<name>_rgba.png`` (or ``<name>.png``), if any
    (several views: beside the first)."""
    paths = input_paths(image_path)
    if not paths:
        return None
    base = os.path.splitext(paths[0])[0]
    for cand in (base.replace("_rgba", "") + "_caption.txt", base + "_caption.txt"):
        if os.path.isfile(cand):
            with open(cand) as fh:
                text = fh.read().strip()
            return text or None
    return None
