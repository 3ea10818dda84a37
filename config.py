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
            if OmegaConf.is_missing(o, k):  # "???": still mandatory (save_path), nothing to check
                continue
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


def _yaml_reason(e: Exception, path: str) -> str:
    """A YAML parse error as one line with its line number and reason (PyYAML spreads them over
    several lines; a tab in the indentation is the commonest)."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or (str(e).strip().splitlines() or [type(e).__name__])[0]
    if mark is None:
        return problem
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            line = fh.read().splitlines()[mark.line]
    except (OSError, IndexError):
        line = ""
    if "\t" in line[:mark.column + 1]:
        problem = "a tab character: YAML indents with spaces only"
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _load_yaml(path: str, seen=()) -> DictConfig:
    """A YAML config; ``_base_: other.yaml`` (relative to it) inherits every key of that file,
    and the file may then only set keys the base has."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}" if not os.path.isdir(path) else
                          f"config {path} is a folder; pass a YAML file (configs/image.yaml, ...)")
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:
        raise ConfigError(f"cannot parse config {path}: {_yaml_reason(e, path)}") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"config {path} must be a mapping of key: value lines at the top level, "
                          f"not a {'list' if isinstance(cfg, ListConfig) else type(cfg).__name__}")
    base = cfg.pop("_base_", None)
    if base is None:
        return cfg
    if not isinstance(base, str) or not base:
        raise ConfigError(f"config {path}: _base_ must be one file name (e.g. _base_: image.yaml), got {base!r}")
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
    validate(merged)
    return merged


# ------------------------------------------------------------------------------ value rules
# Every key of configs/base.yaml (the base of all configs) has a rule here, checked when the config
# is loaded, before any input is read or model loaded (tests/test_config.py asserts that no key
# lacks one). A rule is a function value -> None or the reason the value is wrong; its ``text``
# says what it accepts (docs/configuration.md).

def _rule(check, text: str):
    check.text = text
    return check


def _num(lo=None, hi=None, lo_open=False, hi_open=False, integer=False):
    def check(v):
        if integer and not isinstance(v, int):
            return "must be a whole number"
        if lo is not None and (v <= lo if lo_open else v < lo):
            return f"must be {'above' if lo_open else 'at least'} {lo}"
        if hi is not None and (v >= hi if hi_open else v > hi):
            return f"must be {'below' if hi_open else 'at most'} {hi}"
    bounds = [f"{'>' if lo_open else '>='} {lo}" if lo is not None else "",
              f"{'<' if hi_open else '<='} {hi}" if hi is not None else ""]
    return _rule(check, f"{'whole number' if integer else 'number'} {' and '.join(b for b in bounds if b)}".strip())


def _choice(*options, prefix=False):
    def check(v):
        ok = any(str(v) == o or (prefix and str(v).startswith(o + ":")) for o in options)
        return None if ok else f"must be one of {', '.join(options)}"
    return _rule(check, " \\| ".join(options) + (" (or cuda:N)" if prefix else ""))


def _items(rule, min_len=0):
    def check(v):
        if len(v) < min_len:
            return f"needs at least {min_len} entr{'y' if min_len == 1 else 'ies'}"
        for i, item in enumerate(v):
            why = rule(item)
            if why:
                return f"item {i} ({item}) {why}"
    return _rule(check, f"list{f' of at least {min_len}' if min_len else ''}: each {rule.text}")


_any = _rule(lambda v: None, "")  # the type of the default is checked (check_types)
_path = _rule(lambda v: None, "a path, or empty")
_text = _rule(lambda v: None, "text, or empty")
_name = _rule(lambda v: "must not be empty" if not str(v).strip() else None, "non-empty text")

COUNT = _num(1, integer=True)  # a count: 1 or more
NONNEG = _num(0)
POSITIVE = _num(0, lo_open=True)
FRACTION = _num(0, 1)
ELEVATION = _num(-90, 90)

RULES = {
    "mode": _choice("image", "text", "recon"), "input": _rule(lambda v: None, "a path, a list of paths, or empty"),
    "prompt": _text, "negative_prompt": _text,
    "elevation": ELEVATION, "input_azimuths": _items(_num(-360, 360)),
    "input_elevations": _items(ELEVATION), "ref_size": COUNT, "recenter": _any, "border_ratio": _num(0, 1, hi_open=True),
    "outdir": _name, "save_path": _name, "mesh_format": _choice("obj", "glb"),
    "splat_format": _choice("ply", "splat", "compressed.ply", "spz", "sog", "glb"),
    "gui": _any, "gui_host": _name, "gui_port": _num(0, 65535, integer=True), "gui_max_resolution": COUNT,
    "gui_render_budget": _num(0, 1, lo_open=True), "seed": _num(0, integer=True), "quiet": _any,
    "device": _choice("auto", "cuda", "cpu", "mps", prefix=True), "rasterizer": _choice("auto", "torch", "gsplat", "inria"),
    "mesh_renderer": _choice("auto", "torch", "nvdiffrast"), "tile_size": COUNT, "chunk_size": COUNT,
    "guidance_model": _name, "zero123_resolution": _num(0, integer=True), "stable_zero123": _any, "sd_model": _name,
    "guidance_dtype": _choice("auto", "fp16", "fp32", "bf16"), "guidance_scale": NONNEG, "sd_guidance_scale": NONNEG,
    "t_min": FRACTION, "t_max": FRACTION, "anneal_timestep": _any, "sds_weighting": _choice("sds", "uniform", "snr"),
    "grad_clip": NONNEG, "attention_slicing": _any, "lambda_zero123": NONNEG, "lambda_sd": NONNEG,
    "view_dependent_prompt": _any, "mvdream": _any, "imagedream": _any, "mvdream_model": _name,
    "imagedream_model": _name, "imagedream_image_encoder": _rule(lambda v: None, "a hub id or folder, or empty"), "mv_tokenizer": _name,
    "imagedream_guidance_scale": NONNEG, "recon_num_views": COUNT, "recon_extent": POSITIVE,
    "recon_min_elevation": ELEVATION, "recon_max_elevation": ELEVATION, "input_max_texture": COUNT,
    "iters": COUNT, "batch_size": COUNT, "resolution_schedule": _items(COUNT, 1),
    "resolution_milestones": _items(_num(0, 1, lo_open=True, hi_open=True)), "lambda_rgb": NONNEG,
    "lambda_mask": NONNEG, "warmup_rgb_loss": _any, "radius": POSITIVE, "fovy": _num(0, 180, True, True),
    "min_ver": ELEVATION, "max_ver": ELEVATION, "late_rgb_from": FRACTION, "late_rgb_scale": NONNEG,
    "invert_bg_prob": FRACTION, "load": _path, "num_pts": COUNT,
    "init_radius": POSITIVE, "init_opacity": _num(0, 1, True, True), "init_sh_dc": NONNEG,
    "sh_degree": _num(0, 3, integer=True), "position_lr_scale": NONNEG, "position_lr_init": NONNEG,
    "position_lr_final": NONNEG, "position_lr_delay_mult": NONNEG, "position_lr_max_steps": COUNT,
    "feature_lr": NONNEG, "opacity_lr": NONNEG, "scaling_lr": NONNEG, "rotation_lr": NONNEG,
    "density_start_iter": _num(0, integer=True), "density_end_iter": _num(0, integer=True),
    "densification_interval": COUNT, "opacity_reset_interval": _num(0, integer=True),
    "densify_grad_threshold": NONNEG, "percent_dense": NONNEG, "extent": POSITIVE, "min_opacity": FRACTION,
    "max_screen_size": NONNEG, "max_world_size": NONNEG, "split_samples": COUNT, "split_scale_div": POSITIVE,
    "reset_opacity_value": _num(0, 1, lo_open=True), "final_prune_min_opacity": FRACTION,
    "final_prune_max_scale": NONNEG, "density_thresh": POSITIVE, "mc_resolution": _num(2, integer=True),
    "mc_num_blocks": COUNT, "mc_padding": NONNEG, "mc_sigma_cut": POSITIVE, "mc_margin": NONNEG,
    "mc_min_opacity": _num(0, 1, hi_open=True), "mc_close_radius": _num(0, 0.5),
    "min_component_ratio": FRACTION, "remove_cavities": _any,
    "decimate_target": _num(0, integer=True), "uv_unwrap": _choice("charts", "xatlas"),
    "texture_size": COUNT, "bake_resolution": COUNT,
    "bake_num_azimuth": COUNT, "bake_elevations": _items(_num(-89.9, 89.9), 1), "bake_top_bottom": _any,
    "bake_grazing_cos": _num(-1, 1, hi_open=True), "bake_blend": _choice("first", "weighted"), "mesh": _path,
    "iters_refine": _num(0, integer=True), "texture_lr": NONNEG, "texture_logits": _any, "train_geo": _any,
    "geom_lr": NONNEG, "refine_strength_start": FRACTION, "refine_strength_end": FRACTION,
    "refine_inference_steps": COUNT, "refine_resolution": COUNT, "refine_white_bg": _any, "lambda_refine": NONNEG,
    "lambda_ref_view": NONNEG,
}

# The modes a key acts in, where not every mode (image, text, recon).
MODES = {
    **dict.fromkeys(("input_azimuths", "input_elevations", "recenter", "border_ratio", "stable_zero123",
                     "lambda_zero123", "guidance_model", "zero123_resolution", "guidance_scale", "imagedream",
                     "imagedream_model", "imagedream_image_encoder", "imagedream_guidance_scale", "late_rgb_from",
                     "late_rgb_scale", "lambda_ref_view"), ("image",)),
    **dict.fromkeys(("prompt", "negative_prompt", "mvdream", "lambda_sd", "sd_model", "mvdream_model", "mv_tokenizer",
                     "guidance_dtype", "sd_guidance_scale", "t_min", "t_max", "anneal_timestep", "sds_weighting",
                     "grad_clip", "attention_slicing", "view_dependent_prompt", "elevation", "min_ver", "max_ver",
                     "resolution_schedule", "resolution_milestones", "warmup_rgb_loss", "lambda_rgb", "lambda_mask",
                     "refine_strength_start", "refine_strength_end", "refine_inference_steps", "lambda_refine"),
                   ("image", "text")),
    **dict.fromkeys(("recon_num_views", "recon_extent", "recon_min_elevation", "recon_max_elevation",
                     "input_max_texture"), ("recon",)),
    **dict.fromkeys(("ref_size", "invert_bg_prob", "refine_white_bg", "refine_resolution"), ("image", "recon")),
}


def _relations(c):
    """Rules between keys: (keys named, reason) for each broken one."""
    if c.mc_resolution % c.mc_num_blocks:
        yield "mc_resolution", f"must be a multiple of mc_num_blocks ({c.mc_num_blocks}), got {c.mc_resolution}"
    if c.t_min >= c.t_max:
        yield "t_min", f"must be below t_max ({c.t_max}), got {c.t_min}"
    if c.min_ver > c.max_ver:
        yield "min_ver", f"must not exceed max_ver ({c.max_ver}), got {c.min_ver}"
    if c.recon_min_elevation > c.recon_max_elevation:
        yield "recon_min_elevation", (f"must not exceed recon_max_elevation ({c.recon_max_elevation}), "
                                      f"got {c.recon_min_elevation}")
    if len(c.resolution_milestones) != len(c.resolution_schedule) - 1:
        yield "resolution_milestones", (f"needs one entry fewer than resolution_schedule "
                                        f"({len(c.resolution_schedule)} entries), got {len(c.resolution_milestones)}")
    elif list(c.resolution_milestones) != sorted(c.resolution_milestones):
        yield "resolution_milestones", f"must increase, got {list(c.resolution_milestones)}"


def validate(cfg: DictConfig):
    """Check every key's value against RULES and the rules between keys; raise ConfigError naming
    the first broken one. Unset mandatory keys (save_path: ???) are left to the caller."""
    for key, rule in RULES.items():
        if key not in cfg or OmegaConf.is_missing(cfg, key) or cfg[key] is None:
            continue
        value = cfg[key]
        why = rule(value)
        if why:
            shown = list(value) if isinstance(value, ListConfig) else value
            raise ConfigError(f"config key '{key}' {why}, got {shown!r}" if "got" not in why and "item" not in why
                              else f"config key '{key}' {why}")
    if all(k in cfg for k in ("mc_resolution", "t_min", "min_ver", "resolution_milestones", "recon_min_elevation")):
        for key, why in _relations(cfg):
            raise ConfigError(f"config key '{key}' {why}")


# ------------------------------------------------------------------------------ the reference
CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def commented_keys(path: str) -> list:
    """(group, key, comment) of each top-level key of a YAML config, in file order: ``### Group``
    lines name the groups, ``key: value  # comment`` the keys (a folded value's comment line above it)."""
    import re

    out, group, above = [], "", ""
    with open(path) as fh:
        for line in fh:
            if line.startswith("###"):
                group = line.strip("#\n ").strip()
            elif line.startswith("#"):
                above = line[1:].strip()
            elif re.match(r"^[A-Za-z_]\w*:", line):
                key = line.split(":", 1)[0]
                comment = line.split("  # ", 1)[1].strip() if "  # " in line else above
                if key != "_base_":
                    out.append((group, key, comment))
                above = ""
    return out


def _shown(value) -> str:
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    if value is None:
        return "(empty)"
    if value == "???":
        return "(required)"
    if isinstance(value, bool):
        return str(value).lower()
    text = value if isinstance(value, str) else str(value)
    if isinstance(value, str) and len(text) > 40:
        text = text[:37] + "..."
    return f"`{text}`" if text != "" else '`""`'


def reference_markdown(folder: str = CONFIGS) -> str:
    """docs/configuration.md: every key of every config, from configs/base.yaml (default, comment,
    group), the rules above (what each key accepts, the modes it acts in) and each config's own
    settings. ``python docs/build.py`` writes it; tests/test_config.py checks the file is current."""
    base_path = os.path.join(folder, "base.yaml")
    base = _load_yaml(base_path)
    names = sorted(f for f in os.listdir(folder) if f.endswith(".yaml") and f != "base.yaml")
    own = {}
    for name in names:
        cfg, parent = OmegaConf.load(os.path.join(folder, name)), base
        src = cfg.pop("_base_", None)
        if src and src != "base.yaml":
            parent = _load_yaml(os.path.join(folder, src))
        for key in cfg:
            mine = "???" if OmegaConf.is_missing(cfg, key) else cfg[key]
            theirs = "???" if OmegaConf.is_missing(parent, key) else parent[key]
            if OmegaConf.is_config(mine):
                mine = OmegaConf.to_container(mine)
            if OmegaConf.is_config(theirs):
                theirs = OmegaConf.to_container(theirs)
            if mine != theirs:
                own.setdefault(key, []).append(f"{name}: {_shown(mine)}")
    esc = lambda t: t.replace("|", "\\|")  # noqa: E731
    lines = ["# Configuration reference", "",
             "Every key of every config. `configs/base.yaml` holds each key's default and comment; the other configs",
             "inherit it through `_base_` and set only what they change (*set by*). Any key can be overridden on the",
             "command line as `key=value`; an unknown key or a value outside *accepts* is a one-line error before any",
             "work. *Modes*: where the key acts (`mode=image`, `text` or `recon`). This page is generated from",
             "`configs/` and the rules in `config.py` by `python docs/build.py`; do not edit it by hand.", ""]
    group = None
    for g, key, comment in commented_keys(base_path):
        if g != group:
            group = g
            lines += ["", f"## {g}", "", "| key | default | accepts | modes | what it does | set by |",
                      "|---|---|---|---|---|---|"]
        default = "???" if OmegaConf.is_missing(base, key) else base[key]
        accepts = RULES[key].text or {bool: "true \\| false"}.get(type(default), "text")
        modes = ", ".join(MODES.get(key, ("all",)))
        lines.append(f"| `{key}` | {esc(_shown(default))} | {accepts} | {modes} | {esc(comment)} | "
                     f"{esc('; '.join(own.get(key, [])))} |")
    return "\n".join(lines) + "\n"

