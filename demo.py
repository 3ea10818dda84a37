"""What the demo page (``app.py``) decides without drawing anything: which model it can run (the
config's, or the toy Zero123 trained here when that one is missing), what to download where none
is on the machine, and the input files and overrides it makes from an upload.
"""
from __future__ import annotations

import glob
import os

ROOT = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "data", "*_rgba.png")))
TOY_CONFIG = os.path.join(ROOT, "configs", "toy.yaml")
TOY_MODEL = os.path.join(ROOT, "models", "toy-zero123")
TOY_EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "data", "toy", "*_rgba.png")))


def model_status(cfg) -> tuple[bool, str]:
    """Whether the config's image prior (Zero123, or ImageDream with imagedream=true) is on this
    machine, and what to download where it is not."""
    from guidance.loading import download_command

    if cfg.imagedream:
        from guidance.mvdream import IMAGEDREAM
        from guidance.single_file import find_checkpoint

        model, (repo, file) = str(cfg.imagedream_model), IMAGEDREAM
        where = find_checkpoint(model, file)
        if where:
            return True, f"Model: ImageDream `{where}`."
        return False, (f"**The model is not on this machine.** `{model}` holds no `{file}`. ImageDream (one file, "
                       f"about 8 GB) is needed: download it with `{download_command(repo, file, '/models/imagedream')}` "
                       f"where the hub is reachable, then start the app with "
                       f"`python app.py --config configs/imagedream.yaml imagedream_model=/models/imagedream`.")
    from guidance.loading import find_local

    model = str(cfg.guidance_model)
    where = find_local(model)
    if where:
        return True, f"Model: `{model}` (found at `{where}`)."
    hub = "ashawkey/zero123-xl-diffusers" if os.sep in model or model.startswith(".") else model
    return False, (f"**The model is not on this machine.** `{model}` is not here. Zero123-XL (about 5 GB) is "
                   f"needed: download it with `{download_command(hub, local_dir='/models/zero123-xl')}` "
                   f"where the hub is reachable, then start the app with "
                   f"`python app.py guidance_model=/models/zero123-xl`.")


def choose_model(config: str, overrides: list):
    """(config, overrides, loaded config, model ready, status line, examples) of the page: the
    config as given, or, where its Zero123 is missing and the user named no ``guidance_model``,
    the toy model trained here."""
    from config import load_config
    from guidance.loading import download_command

    base = load_config(config, overrides + ["save_path=demo"])  # a bad key fails here, before the page
    ok, status = model_status(base)
    named = any(o.split("=", 1)[0] == "guidance_model" for o in overrides)
    if ok or base.imagedream or named or not os.path.isfile(os.path.join(TOY_MODEL, "model_index.json")):
        return config, overrides, base, ok, status, EXAMPLES
    toy = overrides + [f"guidance_model={TOY_MODEL}"]
    toy_cfg = load_config(TOY_CONFIG, toy + ["save_path=demo"])
    hub = str(base.guidance_model)
    real = hub if hub.count("/") == 1 and not hub.startswith((".", "/")) else "ashawkey/zero123-xl-diffusers"
    return TOY_CONFIG, toy, toy_cfg, True, (
        f"**Offline demo: `{hub}` is not on this machine, so this page runs the toy Zero123 trained here** "
        f"(`models/toy-zero123`, 64 px, about 5 M parameters, `configs/toy.yaml`). It knows only the procedural "
        f"objects it was trained on (boxes, spheres, cylinders, cones, tori, capsules and unions of them): pick a "
        f"toy example below; a photo will not work. For real images download Zero123-XL (about 5 GB): "
        f"`{download_command(real, local_dir='/models/zero123-xl')}`, then "
        f"`python app.py guidance_model=/models/zero123-xl`."), TOY_EXAMPLES


EXTRA_VIEWS = 3  # optional extra pictures of the object the page takes (image mode takes 2-4 views)


def prepare_input(image, remove_bg: bool, workdir: str, name: str = "input") -> str:
    """The uploaded image as <workdir>/<name>_rgba.png: matted with rembg when asked (or when it
    has no alpha), else as it is."""
    import numpy as np

    from inputs import remove_background
    from io_utils import save_image

    arr = np.asarray(image, dtype=np.float32) / (255.0 if np.asarray(image).dtype == np.uint8 else 1.0)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, -1)
    if remove_bg or arr.shape[-1] == 3:
        arr = remove_background(arr[..., :3])
    path = os.path.join(workdir, f"{name}_rgba.png")
    save_image(path, arr)
    return path


def input_overrides(paths: list, azimuths: list) -> list:
    """The config overrides of the page's input: one image, or several views (the first at
    azimuth 0, each extra at its own azimuth)."""
    if len(paths) == 1:
        return [f"input={paths[0]}"]
    return [f"input=[{','.join(paths)}]", f"input_azimuths=[{','.join(f'{float(a):g}' for a in azimuths)}]"]
