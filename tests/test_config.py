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
