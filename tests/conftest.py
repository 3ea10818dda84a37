import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the hub


@pytest.fixture(scope="session")
def zero123_path(tmp_path_factory):
    from tiny_models import build_zero123

    return build_zero123(str(tmp_path_factory.mktemp("zero123")))


@pytest.fixture(scope="session")
def sd_path(tmp_path_factory):
    from tiny_models import build_sd

    return build_sd(str(tmp_path_factory.mktemp("sd")))
