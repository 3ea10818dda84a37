"""Turntable grids of toy results: a label column, the input image(s), then one row of renders per
result (``toy/quickstart_pictures.py``, ``benchmarks/bench_input_views.py --picture``).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from cameras import Camera
from io_utils import save_image
from mesh_renderer import render_mesh
from toy import objects as toy_objects


def render_azimuths(mesh, azimuths, size):
    """Renders [size, size, 3] of ``mesh`` on white at elevation 0 and each of ``azimuths``."""
    with torch.no_grad():
        return [render_mesh(mesh, Camera.orbit(0.0, a, toy_objects.RADIUS, toy_objects.FOVY, size), backend="torch")
                ["image"].permute(1, 2, 0).numpy() for a in azimuths]


def draw(rows, input_rgba, azimuths, size, path):
    """A grid: a label column, the input image on the first row, then one row per (label, tiles)."""
    label_w, head = 150, 18
    W, H = label_w + size * (len(azimuths) + 1), head + size * len(rows)
    canvas = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(canvas)
    d.text((label_w + 4, 3), "input", fill="black")
    for j, a in enumerate(azimuths):
        d.text((label_w + size * (j + 1) + 4, 3), f"azimuth {a:g}", fill="black")
    inputs = input_rgba if isinstance(input_rgba, list) else [input_rgba]  # several views: side by side
    n = len(inputs)
    for k, img in enumerate(inputs):
        rgba = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).resize((size // n, size // n))
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.paste(Image.alpha_composite(white, rgba).convert("RGB"), (label_w + k * (size // n), head + (size - size // n) // 2))
    for i, (label, tiles) in enumerate(rows):
        y = head + size * i
        for k, line in enumerate(label.split("\n")):
            d.text((4, y + size // 2 - 12 + 12 * k), line, fill="black")
        for j, t in enumerate(tiles):
            canvas.paste(Image.fromarray((np.clip(t, 0, 1) * 255 + 0.5).astype(np.uint8)), (label_w + size * (j + 1), y))
    save_image(path, np.asarray(canvas))
