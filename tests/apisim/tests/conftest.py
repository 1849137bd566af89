import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from apisim.testing import SimProcess  # noqa: E402

FIXTURES = os.environ.get("APISIM_FIXTURES",
                          os.path.join(os.path.dirname(HERE), "..", "..", "..", "shared", "fixtures",
                                       "kube-apiserver-1.19"))
if not os.path.isdir(FIXTURES):
    FIXTURES = "/work/shared/fixtures/kube-apiserver-1.19"


def fixture(name):
    path = os.path.join(FIXTURES, name)
    if not os.path.exists(path):
        pytest.skip("fixture %s not available" % name)
    with open(path) as f:
        if name.endswith(".ndjson"):
            return [json.loads(line) for line in f if line.strip()]
        return json.load(f)


@pytest.fixture(scope="session")
def sim():
    """A bare simulator (no scenario, no controllers) shared by the server tests."""
    with SimProcess(extra_args=["--no-controllers", "--bookmark-interval", "1"]) as s:
        yield s
