"""Helpers of the container-image tests: podman through tests/image/podman.sh, and `Target`,
the API server the containerized operator is pointed at."""

import contextlib
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PODMAN = os.path.join(HERE, "podman.sh")
KUBECTL = os.environ.get("KUBECTL") or shutil.which("kubectl") or "/usr/bin/kubectl"
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import kmop  # noqa: E402,F401  (wait_for, http_get, SimProcess: shared with the integration tests)


def unavailable():
    """None if podman can run containers here, else one line saying why (tests/image/probe.sh)."""
    cp = subprocess.run([os.path.join(HERE, "probe.sh")], capture_output=True, text=True,
                        timeout=120)
    return None if cp.returncode == 0 else (cp.stderr.strip().splitlines() or ["probe failed"])[-1]


def podman(*args, check=True, timeout=120, input=None):
    """Runs tests/image/podman.sh; CompletedProcess (text).  check: raise on a non-zero exit."""
    cp = subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout, input=input)
    if check and cp.returncode != 0:
        raise AssertionError("podman %s failed (%d): %s%s" % (" ".join(args), cp.returncode, cp.stdout,
                                                             cp.stderr))
    return cp


class Target:
    """A Kubernetes API server on 127.0.0.1 whose serving certificate is valid for 127.0.0.1.

    url         https://127.0.0.1:<port>
    ca_file     the cluster CA (what a pod gets as ca.crt)
    kubeconfig  an admin kubeconfig (installs, checks)
    forbidden   callable -> list of requests the server answered 403, or None if it cannot tell
    """

    def __init__(self, url, ca_file, kubeconfig, forbidden=lambda: None):
        self.url = url
        self.ca_file = ca_file
        self.kubeconfig = kubeconfig
        self.forbidden = forbidden

    def kubectl(self, *args, check=True, input=None, timeout=120):
        cp = subprocess.run([KUBECTL, "--kubeconfig", self.kubeconfig, *args], input=input,
                            capture_output=True, text=True, timeout=timeout)
        if check and cp.returncode != 0:
            raise AssertionError("kubectl %s failed (%d): %s%s" % (" ".join(args), cp.returncode,
                                                                  cp.stdout, cp.stderr))
        return cp


def real_target(workdir, prefer="v1.26"):
    """A context manager yielding a Target on a real control plane (tests/realk8s) with the seed installed and
    the PKI rebuilt, `prefer` or the newest version found; None where no binaries are found."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "realk8s"))
    from realk8s import assets
    versions = assets.available_versions()
    if not versions:
        return None
    return _real(workdir, prefer if prefer in versions else versions[-1])


@contextlib.contextmanager
def _real(workdir, version):
    from realk8s import seed
    from realk8s.cluster import ControlPlane
    from realk8s.kubelet import KubeletSim
    cp = ControlPlane(version, workdir, audit_groups=["system:serviceaccounts:kubemend-system"])
    sim = None
    try:
        cp.start()
        sim = KubeletSim(cp.workdir, ["cp-1", "worker-1", "worker-2"]).start()
        seed.disaster(cp, sim, seed.install(cp, sim))
        print("image target: real kube-apiserver %s at %s, seed installed, PKI rebuilt" % (version, cp.url))

        def forbidden():
            assert cp.audit_events(), "the apiserver audited no request of kubemend-system's ServiceAccounts"
            return cp.audit_denied()
        yield Target(cp.url, cp.ca_file, cp.admin_kubeconfig, forbidden)
    finally:
        if sim is not None:
            sim.stop()
        cp.stop()
