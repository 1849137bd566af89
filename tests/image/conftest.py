"""Fixtures of the container-image tests.

    image    session: builds the image with tests/image/build.sh (podman's layer cache makes an
             unchanged tree a no-op) and returns its reference.  (Where podman cannot run
             containers, test_image.py already skipped itself with one line.)
    target   the Kubernetes API server the containerized operator heals: a `Target` (url, ca_file,
             kubeconfig, kubectl(), forbidden()), just after a control-plane PKI rebuild:
             a real control plane (tests/realk8s: etcd + kube-apiserver + kube-controller-manager,
             v1.26 or the newest version found in $KUBEMEND_K8S_ASSETS, the kubelet simulator,
             the seed installed and the PKI rebuilt; the apiserver audits the kubemend-system
             ServiceAccounts, so forbidden() is the authorizer's word), else tests/apisim's
             "seed" cluster (one line in the test output says which).  This fixture is the only
             place that knows which server it is.
"""

import os
import subprocess

import pytest

from kmimage import HERE, ROOT, Target, kmop, real_target


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
def target(tmp_path):
    real = real_target(str(tmp_path / "k8s"))
    if real is not None:
        with real as t:
            yield t
        return
    print("image target: tests/apisim's seed cluster (no real Kubernetes binaries found)")
    with kmop.SimProcess(scenario="seed") as sim:
        def forbidden():
            _, counters = sim.sim("GET", "/_sim/counters")
            return [r for r in counters["requests"] if r["code"] == 403]

        yield Target(sim.url, sim.ca_file, sim.kubeconfig, forbidden)
