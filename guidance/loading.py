"""Loading diffusion checkpoints in the layouts that exist on the hub, strictly.

A checkpoint is a folder in diffusers layout (``model_index.json`` plus one subfolder per
component) or a hub id that resolves to one. The folder's own files say what it holds:

* ``model_index.json`` names the pipeline class and its components;
* each component's ``config.json`` (``scheduler_config.json``, ``preprocessor_config.json``) its
  class and sizes; its weights are ``*.safetensors`` or, in older exports, ``*.bin`` (read with
  ``weights_only=True`` only), possibly sharded with an ``.index.json``.

Every component must load completely: a missing, unexpected or wrongly shaped weight is a one-line
``ModelLoadError`` naming the model, the component and the first key at fault, never a partly
random model.
"""
from __future__ import annotations

import json
import os

import torch

from guidance.base import ModelNotFoundError

WEIGHT_NAMES = ("diffusion_pytorch_model", "model", "pytorch_model")


class ModelLoadError(ModelNotFoundError):
    """A checkpoint that exists but does not match what its config says (wrong or partial weights)."""


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def quiet_libraries():
    """diffusers / transformers print loading notices through logging; keep errors only."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def hub_cli() -> str:
    """The download command the installed huggingface_hub provides: ``hf`` (from 0.34 on, and the
    only one from 1.0), else the older ``huggingface-cli``."""
    from importlib.metadata import PackageNotFoundError, entry_points, version

    names = {e.name for e in entry_points(group="console_scripts") if e.name in ("hf", "huggingface-cli")}
    if names:
        return "hf" if "hf" in names else "huggingface-cli"
    try:
        major, minor = (int(x) for x in version("huggingface_hub").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return "hf"
    return "hf" if (major, minor) >= (0, 34) else "huggingface-cli"


def download_command(repo: str, filename: str | None = None, local_dir: str | None = None) -> str:
    """The shell command that downloads hub ``repo`` (or one ``filename`` of it) with the installed CLI."""
    parts = [hub_cli(), "download", repo] + ([filename] if filename else []) + (["--local-dir", local_dir] if local_dir else [])
    return " ".join(parts)


def _looks_like_path(path: str) -> bool:
    """Hub ids are ``owner/name``; anything else is meant as a folder."""
    return path.startswith(("/", ".", "~")) or path.count("/") != 1


def hub_patterns(files: list[str]) -> list[str]:
    """What to download of a hub repository listing: configs, tokenizer files and, per component,
    its safetensors weights or (only where it has none) its .bin weights, no fp16/EMA variants."""
    keep = [f for f in files if f.endswith((".json", ".txt"))]
    weights = [f for f in files if f.endswith((".safetensors", ".bin")) and f.count("/") == 1
               and f.split("/")[1].split(".")[0] in WEIGHT_NAMES and ".fp16." not in f and "ema" not in f]
    for sub in sorted({f.split("/")[0] for f in weights}):
        mine = [f for f in weights if f.startswith(sub + "/")]
        safe = [f for f in mine if f.endswith(".safetensors")]
        keep += safe or mine
    return keep


def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection to the hub endpoint (``HF_ENDPOINT`` or huggingface.co) with a short
    timeout, so that a machine without a route fails in seconds instead of retrying."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_folder(path: str, what: str, config_key: str) -> str:
    """A local folder for ``path``: the folder itself, or the hub snapshot of a hub id (from the
    local cache when offline). One-line ModelNotFoundError when neither exists."""
    path = os.path.expanduser(str(path))
    if os.path.isdir(path):
        return path
    local = f"set {config_key}=/path/to/local/folder"
    if _looks_like_path(path):
        raise ModelNotFoundError(f"{what}: no folder at {path}; {local} in diffusers layout")
    how = f"download it with `{download_command(path)}` where the hub is reachable, or {local}"

    def fetch(local_only):
        from huggingface_hub import list_repo_files, snapshot_download

        if local_only:
            return snapshot_download(path, local_files_only=True)
        return snapshot_download(path, allow_patterns=hub_patterns(list_repo_files(path)))
    return from_hub(fetch, what, f"'{path}'", how)


def from_hub(fetch, what: str, name: str, how: str):
    """``fetch(local_only)`` (a huggingface_hub download) against the hub, or only against the local
    cache when offline or without a route (no 30 s of retries). Any failure (offline, unknown repo,
    gated, missing file, network) ends the same way for the user: one line naming ``name`` and
    ``how`` to get it."""
    try:
        return fetch(offline() or not hub_reachable())
    except Exception as e:
        raise ModelNotFoundError(f"{what}: {name} could not be loaded from the hub or the local cache "
                                 f"({type(e).__name__}); {how}") from None


def read_json(path: str, what: str) -> dict:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ModelNotFoundError(f"{what}: {path} is missing (not a diffusers-layout folder?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{what}: {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{what}: {path} is not a JSON object")
    return data


def model_index(folder: str, what: str) -> dict:
    """The folder's ``model_index.json``: pipeline class and components (name -> [library, class])."""
    return read_json(os.path.join(folder, "model_index.json"), what)


def weight_files(folder: str, sub: str) -> list[str]:
    """The weight files of one component: safetensors before .bin, one file or a sharded set."""
    d = os.path.join(folder, sub)
    for ext in ("safetensors", "bin"):
        for stem in WEIGHT_NAMES:
            single = os.path.join(d, f"{stem}.{ext}")
            if os.path.isfile(single):
                return [single]
            index = single + ".index.json"
            if os.path.isfile(index):
                shards = sorted(set(read_json(index, sub).get("weight_map", {}).values()))
                return [os.path.join(d, s) for s in shards]
    return []


def read_state_dict(files: list[str]) -> dict:
    """Tensors of safetensors / .bin files (.bin with weights_only=True: never arbitrary objects)."""
    sd = {}
    for f in files:
        if f.endswith(".safetensors"):
            from safetensors.torch import load_file

            sd.update(load_file(f))
        else:
            sd.update(torch.load(f, map_location="cpu", weights_only=True, mmap=True))
    return sd


def first_mismatch(expected: dict, got: dict) -> str | None:
    """The first problem between two {key: shape} maps, as words, or None where they match."""
    for k in expected:
        if k not in got:
            return f"missing key '{k}'"
    for k in got:
        if k not in expected:
            return f"unexpected key '{k}'"
    for k, shape in expected.items():
        if tuple(got[k]) != tuple(shape):
            return f"key '{k}' has shape {list(got[k])}, expected {list(shape)}"
    return None


def load_library_component(cls, folder: str, sub: str, what: str):
    """A diffusers / transformers model from ``folder/sub``, every weight accounted for."""
    quiet_libraries()
    d = os.path.join(folder, sub)
    if not os.path.isdir(d):
        raise ModelNotFoundError(f"{what}: component '{sub}' is missing from {folder}")
    if not os.path.isfile(os.path.join(d, "config.json")):
        raise ModelNotFoundError(f"{what}: component '{sub}' has no config.json in {folder}")
    if not weight_files(folder, sub):
        raise ModelNotFoundError(f"{what}: component '{sub}' has no weights (*.safetensors or *.bin) in {folder}")
    try:
        model, info = cls.from_pretrained(folder, subfolder=sub, local_files_only=True, output_loading_info=True,
                                          ignore_mismatched_sizes=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelLoadError(f"{what}: component '{sub}' ({cls.__name__}) did not load: "
                             f"{type(e).__name__}: {msg[:300]}") from None
    problems = ([f"missing key '{k}'" for k in info.get("missing_keys", [])]
                + [f"unexpected key '{k}'" for k in info.get("unexpected_keys", [])
                   if not k.endswith("position_ids")]  # a buffer older transformers exports saved
                + [f"key '{m[0]}' has the wrong shape" for m in info.get("mismatched_keys", [])]
                + [str(m).splitlines()[0] for m in info.get("error_msgs", [])])
    if problems:
        raise ModelLoadError(f"{what}: component '{sub}' ({cls.__name__}) does not match its config.json: "
                             f"{problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return model


def load_processor(cls, folder: str, sub: str, config_name: str, what: str):
    """A tokenizer or image processor from ``folder/sub`` (``config_name`` must be there), with a
    one-line error where it does not load."""
    read_json(os.path.join(folder, sub, config_name), what)
    try:
        return cls.from_pretrained(folder, subfolder=sub)
    except Exception as e:
        raise ModelLoadError(f"{what}: component '{sub}' ({cls.__name__}) did not load ({type(e).__name__})") from None


def load_scheduler(cls, folder: str, what: str):
    """``cls`` (e.g. DDIMScheduler) built from the folder's scheduler config, whatever class it names."""
    cfg = read_json(os.path.join(folder, "scheduler", "scheduler_config.json"), what)
    pred = cfg.get("prediction_type", "epsilon")
    if pred != "epsilon":
        raise ModelLoadError(f"{what}: the scheduler predicts '{pred}'; score distillation here needs an "
                             "epsilon-prediction model (e.g. stable-diffusion-2-1-base, not the 768 v-model)")
    return cls.from_config({k: v for k, v in cfg.items() if not k.startswith("_")})


def find_local(path: str) -> str | None:
    """The local folder of a model (a folder, or a hub id already in the Hugging Face cache),
    without downloading anything; None when it is not here."""
    path = os.path.expanduser(str(path))
    if os.path.isdir(path):
        return path
    if _looks_like_path(path):
        return None
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(path, local_files_only=True)
    except Exception:
        return None
