"""The real kube-apiserver restarted while `kubemend run --once` heals the seed (tests/realk8s: etcd +
kube-apiserver + kube-controller-manager + the kubelet simulator; ControlPlane.restart_apiserver kills the process
and starts it again; kube-controller-manager, which exits when it loses its lease meanwhile, is restarted as the
kubelet restarts a static pod): once during the tokens step and once when the pods step starts.  The one run must ride both out
(exit 0) and its end state must pass every check of the e2e recovery suites (tests/e2e/recovery_checks.py: the same ones a clean run passes there).  Full matrix only; skipped with
one line where no real Kubernetes binaries are found."""

import importlib.util
import os
import subprocess
import sys
import time

import pytest

from conftest import FULL

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
E2E = os.path.join(ROOT, "tests", "e2e")
sys.path.insert(0, E2E)
_spec = importlib.util.spec_from_file_location("e2e_conftest", os.path.join(E2E, "conftest.py"))
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)

import scene as scene_mod  # noqa: E402
from recovery_checks import Healed, RecoveryChecks  # noqa: E402

pytestmark = pytest.mark.skipif(not FULL, reason="KM_RELIABILITY=full (make reliability)")

control_plane, kubelet, scene = e2e.control_plane, e2e.kubelet, e2e.scene
RESTART_WHEN = ("[run-once] tokens: running", "[run-once] pods: running")
MAX_RUNS = 1  # no rerun: kubemend itself must ride out a restarting apiserver


def pytest_generate_tests(metafunc):
    e2e.pytest_generate_tests(metafunc)


def run_with_restarts(cp, log_path):
    """kubemend run --once with the apiserver restarted at RESTART_WHEN (then up to MAX_RUNS - 1 reruns until
    exit 0).  (exit codes, combined log, restarts done).  The restarts run in this thread: realk8s's processes
    die with the thread that started them (PR_SET_PDEATHSIG)."""
    codes, logs, restarted = [], [], []
    for i in range(MAX_RUNS):
        path = "%s.%d" % (log_path, i)
        with open(path, "w") as err:
            p = subprocess.Popen([scene_mod.KUBEMEND, "run", "--once", "--kubeconfig", cp.admin_kubeconfig],
                                 stdout=subprocess.DEVNULL, stderr=err)
        todo = list(RESTART_WHEN) if i == 0 else []
        deadline = time.time() + 300
        while p.poll() is None and time.time() < deadline:
            if todo:
                with open(path) as f:
                    if todo[0] in f.read():
                        cp.restart_apiserver()
                        # kube-controller-manager exits when it cannot renew its lease while the apiserver is
                        # down (leaderelection lost); the kubelet restarts that static pod: so does the harness
                        cp.restart_controller_manager()
                        restarted.append(todo.pop(0))
            time.sleep(0.05)
        if p.poll() is None:
            p.kill()
        p.wait()
        codes.append(p.returncode)
        with open(path) as f:
            logs.append(f.read())
        if p.returncode == 0:
            break
    return codes, "\n".join(logs), restarted


@pytest.fixture(scope="module")
def healed(scene):
    cp = scene.cp
    before = scene_mod.snapshot(cp)
    codes, log, restarted = run_with_restarts(cp, os.path.join(cp.workdir, "kubemend-restarts.log"))
    assert restarted == list(RESTART_WHEN), (restarted, log[-3000:])
    assert codes[-1] == 0, (codes, log[-4000:])
    # let the last rollouts finish before the snapshot (as tests/e2e's settled())
    deadline = time.time() + 180
    while time.time() < deadline:
        snap = scene_mod.snapshot(cp)
        if all(w["rolledOut"] for w in snap["workloads"].values()) and not any(
                p["deleting"] for p in snap["pods"].values()):
            break
        time.sleep(2)
    h = Healed(scene, before, scene_mod.snapshot(cp), log, "run-once")
    h.codes = codes
    return h


class TestApiserverRestartedMidRun(RecoveryChecks):
    def test_one_run_rode_out_the_restarts(self, healed):
        assert healed.codes == [0], healed.codes
