"""Fixtures of the container-image tests.

    image    session: builds the image with tests/image/build.sh (podman's layer cache makes an
             unchanged tree a no-op) and returns its reference.  (Where podman cannot run
             containers, test_image.py already skipped itself with one line.)
    target   the Kubernetes API server the containerized operator heals: a `Target` (url, ca_file,
             kubeconfig, kubectl(), forbidden()), today tests/apisim's "seed" cluster (just after
             a control-plane PKI rebuild).  This fixture is the only place that knows which
             server it is: pointing the test at a real control plane means returning a Target
             built from that harness's cluster (its URL, CA file and admin kubeconfig) here.
"""

import os
import subprocess

import pytest

from kmimage import HERE, ROOT, Target, kmop


@pytest.fixture(scope="session")
def image():
    """'kubemend:<version>' freshly built (or unchanged) from this tree."""
    version = os.environ.get("KUBEMEND_VERSION") or subprocess.run(
        ["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True,
        text=True).stdout.strip() or "0.1.0"
    cp = subprocess.run([os.path.join(HERE, "build.sh"), version], capture_output=True, text=True,
                        timeout=1800)
    if cp.returncode == 3:
        reason = (cp.stderr.strip().splitlines() or ["build.sh exited 3"])[-1]
        pytest.skip("image tests skipped: " + reason.replace("image: ", "", 1))
    assert cp.returncode == 0, "image build failed:\n" + (cp.stdout + cp.stderr)[-6000:]
    return "kubemend:" + version


@pytest.fixture
def target():
    with kmop.SimProcess(scenario="seed") as sim:
        def forbidden():
            _, counters = sim.sim("GET", "/_sim/counters")
            return [r for r in counters["requests"] if r["code"] == 403]

        yield Target(sim.url, sim.ca_file, sim.kubeconfig, forbidden)
