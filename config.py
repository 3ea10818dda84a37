"""OmegaConf configs: a YAML file plus ``key=value`` overrides; unknown keys are errors."""
from __future__ import annotations

import difflib
import math
import os

from omegaconf import DictConfig, ListConfig, OmegaConf


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


def _type_name(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple, ListConfig)):
        return "list"
    return type(value).__name__


def check_types(base: DictConfig, override: DictConfig, source: str) -> DictConfig:
    """Each overridden value must have the type of the key's default (int, float, bool, string,
    list; an int is a valid float, anything a valid string) and numbers must be finite. Keys whose
    default is empty (null) take any value. Returns the override with ints for float keys made
    floats and scalars for string keys made strings."""
    fixed = OmegaConf.to_container(override)

    def walk(b, o, f, prefix):
        for k in list(o.keys()):
            name = f"{prefix}{k}"
            if not isinstance(b, DictConfig) or k not in b.keys():
                default = None
            else:
                default = "???" if OmegaConf.is_missing(b, k) else b[k]
            value = o[k]
            if isinstance(default, DictConfig):
                if not isinstance(value, DictConfig):
                    raise ConfigError(f"config key '{name}' in {source} is a group of keys, got {value!r}")
                walk(default, value, f[k], name + ".")
                continue
            if default is None:
                continue
            if default == "???":  # mandatory, no default to compare with: a name (save_path) is a string
                if isinstance(value, (int, float)):
                    f[k] = str(value)
                continue
            want, got = _type_name(default), _type_name(value)
            if isinstance(value, float) and not math.isfinite(value) and want in ("int", "float"):
                raise ConfigError(f"config key '{name}' in {source} must be a finite number, got {value}")
            if want == "int" and got == "float" and value.is_integer():  # 1e3
                f[k] = int(value)
            elif want == "float" and got == "int":
                f[k] = float(value)
            elif want == "string" and got in ("int", "float", "bool"):
                f[k] = str(value)
            elif want != got:
                raise ConfigError(f"config key '{name}' in {source} must be {'an' if want == 'int' else 'a'} "
                                  f"{want} (default {default!r}), got {value!r}")
            numeric = want == "list" and len(default) > 0 and all(_type_name(x) in ("int", "float") for x in default)
            for i, item in enumerate(value if numeric else ()):
                if _type_name(item) not in ("int", "float") or not math.isfinite(item):
                    raise ConfigError(f"config key '{name}' in {source}: item {i} must be a finite number, got {item!r}")

    walk(base, override, fixed, "")
    return OmegaConf.create(fixed)


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
    return OmegaConf.merge(parent, check_types(parent, cfg, path))


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
    over = check_types(cfg, over, "the command line")
    merged = OmegaConf.merge(cfg, over)
    OmegaConf.set_struct(merged, True)  # later typos in code fail loudly too
    return merged
