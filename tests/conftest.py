import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the hub
if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N (the README's command): each worker, and the scripts it
    # starts, its share of the cores; N torch processes that each use every core run many times slower
    _share = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(_share)
    import torch

    torch.set_num_threads(_share)


@pytest.fixture(scope="session")
def zero123_path(tmp_path_factory):
    """ashawkey/zero123-xl-diffusers layout, safetensors (the configs' default)."""
    from guidance.hub_layouts import build_zero123

    return build_zero123(str(tmp_path_factory.mktemp("zero123")))


@pytest.fixture(scope="session")
def zero123_bin_path(tmp_path_factory):
    """The same layout as an older export: .bin weights, legacy VAE attention names."""
    from guidance.hub_layouts import build_zero123

    return build_zero123(str(tmp_path_factory.mktemp("zero123_bin")), fmt="bin", seed=1)


@pytest.fixture(scope="session")
def zero123_community_path(tmp_path_factory):
    """kxic's zero1to3 conversion: cc_projection/ with CCProjection."""
    from guidance.hub_layouts import build_zero123

    return build_zero123(str(tmp_path_factory.mktemp("zero123_cc")), layout="community", seed=2)


@pytest.fixture(scope="session")
def sd_path(tmp_path_factory):
    from guidance.hub_layouts import build_sd

    return build_sd(str(tmp_path_factory.mktemp("sd")))
