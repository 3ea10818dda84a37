import pytest

from config import ConfigError, load_config


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


CONFIGS = __import__("os").path.join(__import__("os").path.dirname(__file__), "..", "configs")


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

    shutil.copy(os.path.join(CONFIGS, "image.yaml"), tmp_path / "image.yaml")
    (tmp_path / "child.yaml").write_text("_base_: image.yaml\niters: many\n")
    with pytest.raises(ConfigError, match=r"'iters' in .*child.yaml must be an int"):
        load_config(str(tmp_path / "child.yaml"), ["save_path=x"])
