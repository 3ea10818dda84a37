import glob
import os
import re

import pytest

from config import MODES, RULES, ConfigError, commented_keys, load_config, reference_markdown


def test_override_and_unknown_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("iters: 500  # steps\ngaussian:\n  num_pts: 5000\nsave_path: x\n")
    cfg = load_config(str(p), ["iters=10", "gaussian.num_pts=7"])
    assert cfg.iters == 10 and cfg.gaussian.num_pts == 7
    with pytest.raises(ConfigError, match="did you mean 'iters'"):
        load_config(str(p), ["iter=3"])
    with pytest.raises(ConfigError, match="gaussian.num_pts"):
        load_config(str(p), ["gaussian.num_pt=3"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(str(p), ["iters"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "missing.yaml"))


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")


@pytest.mark.parametrize("override,words", [
    ("iters=nan", "'iters' in the command line must be an int (default 500), got 'nan'"),
    ("iters=1.5", "must be an int"),
    ("feature_lr=abc", "'feature_lr' in the command line must be a float"),
    ("lambda_rgb=.inf", "must be a finite number, got inf"),
    ("t_max=.nan", "must be a finite number"),
    ("resolution_schedule=5", "must be a list"),
    ("bake_elevations=[0,.nan]", "item 1 must be a finite number"),
    ("bake_elevations=[0,abc]", "item 1 must be a finite number, got 'abc'"),
    ("quiet=maybe", "must be a bool"),
])
def test_override_of_the_wrong_type_is_a_one_line_error(override, words):
    import os

    with pytest.raises(ConfigError) as e:
        load_config(os.path.join(CONFIGS, "image.yaml"), [override, "save_path=x"])
    assert words in str(e.value) and "\n" not in str(e.value)


def test_overrides_are_converted_where_that_is_safe():
    import os

    cfg = load_config(os.path.join(CONFIGS, "image.yaml"), ["feature_lr=1", "iters=1e3", "save_path=123",
                                                            "mesh_format=obj", "bake_elevations=[0,-30.5]"])
    assert cfg.feature_lr == 1.0 and isinstance(cfg.feature_lr, float)
    assert cfg.iters == 1000 and isinstance(cfg.iters, int)
    assert cfg.save_path == "123" and list(cfg.bake_elevations) == [0, -30.5]


def test_a_config_file_is_type_checked_against_its_base(tmp_path):
    import os
    import shutil

    for name in ("base.yaml", "image.yaml"):
        shutil.copy(os.path.join(CONFIGS, name), tmp_path / name)
    (tmp_path / "child.yaml").write_text("_base_: image.yaml\niters: many\n")
    with pytest.raises(ConfigError, match=r"'iters' in .*child.yaml must be an int"):
        load_config(str(tmp_path / "child.yaml"), ["save_path=x"])


def test_every_key_is_in_base_yaml_with_a_comment_and_every_comment_is_one_short_line():
    keys = commented_keys(os.path.join(CONFIGS, "base.yaml"))
    assert {k for _, k, _ in keys} == set(RULES) and len(keys) == len(RULES)
    assert all(comment for _, _, comment in keys), [k for _, k, c in keys if not c]
    assert set(MODES) <= set(RULES)
    for path in glob.glob(os.path.join(CONFIGS, "*.yaml")):
        with open(path) as fh:
            lines = fh.read().splitlines()
        for n, line in enumerate(lines, 1):
            assert len(line) <= 120, f"{path}:{n} is {len(line)} characters"
            comment = line.split("#", 1)[1] if "#" in line else ""
            assert not re.search(r"\d+(\.\d+)? ?(dB|%|s\b)|BENCHMARKS.md:|->", comment), f"{path}:{n}: a figure in a comment"
        for _, key, comment in commented_keys(path):
            assert comment, f"{path}: {key} has no comment"


def test_image_yaml_is_the_reference_s_short_list_with_base_yaml_s_values():
    """configs/image.yaml sets at most 60 keys, the ones users edit, each to base.yaml's default."""
    from omegaconf import OmegaConf

    own = OmegaConf.load(os.path.join(CONFIGS, "image.yaml"))
    base = OmegaConf.load(os.path.join(CONFIGS, "base.yaml"))
    keys = [k for k in own if k != "_base_"]
    assert own._base_ == "base.yaml" and len(keys) <= 60
    for k in keys:
        a = "???" if OmegaConf.is_missing(own, k) else own[k]
        b = "???" if OmegaConf.is_missing(base, k) else base[k]
        assert a == b and type(a) is type(b), (k, a, b)


def test_configuration_reference_is_current():
    """docs/configuration.md is what ``python docs/build.py`` makes of configs/ and config.RULES."""
    with open(os.path.join(ROOT, "docs", "configuration.md")) as fh:
        assert fh.read() == reference_markdown(), "docs/configuration.md is stale: run python docs/build.py"


def test_every_key_is_exercised_by_a_test():
    """Each key is named in a test other than this file's checks of the config files themselves."""
    text = ""
    for path in glob.glob(os.path.join(ROOT, "tests", "*.py")):
        if not path.endswith("test_config.py"):
            with open(path) as fh:
                text += fh.read()
    missing = [k for k in RULES if not re.search(r"\b%s\b" % k, text)]
    assert not missing, missing
