"""OmegaConf configs: a YAML file plus ``key=value`` overrides; unknown keys are errors."""
from __future__ import annotations

import difflib
import os

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config problem the user can fix (unknown key, bad value, missing file)."""


def _all_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for k in cfg.keys():
        v = cfg._get_node(k)
        name = f"{prefix}{k}"
        keys.append(name)
        if isinstance(v, DictConfig):
            keys += _all_keys(v, name + ".")
    return keys


def check_known_keys(base: DictConfig, override: DictConfig, source: str):
    """Raise ConfigError naming the closest known key for any key of ``override`` not in ``base``."""
    known = _all_keys(base)
    for key in _all_keys(override):
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config key '{key}' in {source}{hint}")


def _load_yaml(path: str, seen=()) -> DictConfig:
    """A YAML config; ``_base_: other.yaml`` (relative to it) inherits every key of that file,
    and the file may then only set keys the base has."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:
        raise ConfigError(f"cannot parse config {path}: {e}") from None
    base = cfg.pop("_base_", None)
    if base is None:
        return cfg
    base_path = os.path.join(os.path.dirname(path), base)
    if os.path.abspath(base_path) in seen:
        raise ConfigError(f"config {path}: _base_ cycle through {base}")
    parent = _load_yaml(base_path, seen + (os.path.abspath(path),))
    check_known_keys(parent, cfg, path)
    return OmegaConf.merge(parent, cfg)


def load_config(path: str, overrides: list[str] | tuple = ()) -> DictConfig:
    """Load ``path`` (YAML) and apply ``key=value`` overrides; every key must already exist."""
    cfg = _load_yaml(path)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
    try:
        over = OmegaConf.from_dotlist(list(overrides))
    except Exception as e:
        raise ConfigError(f"cannot parse overrides {list(overrides)}: {e}") from None
    check_known_keys(cfg, over, "the command line")
    merged = OmegaConf.merge(cfg, over)
    OmegaConf.set_struct(merged, True)  # later typos in code fail loudly too
    return merged
