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
    """A bare simulator (no scenario, no controllers) shared by the server tests.  Profile legacy: the server
    tests compare with the recorded kube-apiserver 1.19 fixtures."""
    with SimProcess(extra_args=["--no-controllers", "--bookmark-interval", "1", "--profile", "legacy"]) as s:
        yield s


@pytest.fixture(scope="session")
def modern_sim():
    """A bare simulator with profile modern (kube-apiserver 1.26 behaviour)."""
    with SimProcess(extra_args=["--no-controllers", "--profile", "modern"]) as s:
        yield s


def wait_established(sim, crd_name, timeout=10):
    """Like `kubectl wait --for=condition=Established`: custom resources are served only after it."""
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        st, crd = sim.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" + crd_name)
        if st == 200 and any(c.get("type") == "Established" and c.get("status") == "True"
                             for c in (crd.get("status") or {}).get("conditions") or []):
            return crd
        time.sleep(0.02)
    raise AssertionError("CRD %s not Established" % crd_name)
