"""pytest plumbing for the real-server (e2e) suites: tests/realk8s's control plane + kubelet simulator.

Fixtures (each test module gets a fresh cluster per version):
    k8s_version     parametrized over realk8s.assets.available_versions() ($KUBEMEND_K8S_VERSIONS restricts);
                    when none is available every test here is skipped with one reason naming the variable
    control_plane   module scope: a started realk8s.cluster.ControlPlane (workdir under pytest's tmp dir); a
                    module's CONTROL_PLANE dict adds ControlPlane keyword arguments (e.g. audit_groups)
    kubelet         module scope: a started KubeletSim with nodes cp-1, worker-1, worker-2 (all Ready)
    scene           module scope: the seed installed on them and the disaster done, plus scene.py's workloads
                    created after the rebuild (scene.Scene)
    fresh_cluster   function scope: factory fresh_cluster(nodes=(...)) -> (ControlPlane, KubeletSim) of its own

The terminal summary says how many real-server tests ran per version (and how long they took), or why none did.
"""

import os
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "realk8s"))

from realk8s import assets, cluster  # noqa: E402
from realk8s.kubelet import KubeletSim  # noqa: E402

NODES = ("cp-1", "worker-1", "worker-2")
VERSIONS = assets.available_versions()
SKIP_REASON = assets.skip_reason()


def pytest_report_header(config):
    if VERSIONS:
        return "real Kubernetes versions: %s (from %s; $%s restricts)" % (
            ", ".join(VERSIONS), assets.assets_dir(), assets.ENV_VERSIONS)
    return SKIP_REASON


def pytest_generate_tests(metafunc):
    if "k8s_version" in metafunc.fixturenames:
        if VERSIONS:
            metafunc.parametrize("k8s_version", VERSIONS, scope="module")
        else:
            metafunc.parametrize("k8s_version", [pytest.param(None, marks=pytest.mark.skip(reason=SKIP_REASON))],
                                 ids=["no-k8s"], scope="module")


def _version_of(item):
    cs = getattr(item, "callspec", None)
    return cs.params.get("k8s_version") if cs is not None else None


_RESULTS = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    version = _version_of(item)
    if version is None:
        return
    res = _RESULTS.setdefault(version, {"passed": 0, "failed": 0, "skipped": 0, "xfailed": 0, "seconds": 0.0})
    res["seconds"] += rep.duration
    if rep.when == "call" or (rep.when == "setup" and not rep.passed):
        if hasattr(rep, "wasxfail") and rep.skipped:
            res["xfailed"] += 1
        else:
            res["skipped" if rep.skipped else ("passed" if rep.passed else "failed")] += 1


def pytest_terminal_summary(terminalreporter):
    tr = terminalreporter
    if not VERSIONS:
        tr.write_line(SKIP_REASON)
        return
    if not _RESULTS:
        return
    parts = ["%s: %d passed, %d failed, %d skipped, %d xfailed in %.0f s" % (
        v, r["passed"], r["failed"], r["skipped"], r["xfailed"], r["seconds"]) for v, r in sorted(_RESULTS.items())]
    tr.write_line("real-server tests: " + "; ".join(parts))
    leftovers = cluster.leftover_processes()
    if leftovers:
        tr.write_line("real-server processes LEFT RUNNING: %s" % leftovers, red=True)


def pytest_sessionfinish(session):
    cluster.stop_all()


@pytest.fixture(scope="module")
def control_plane(k8s_version, tmp_path_factory, request):
    cp = cluster.ControlPlane(k8s_version, str(tmp_path_factory.mktemp("k8s-%s-" % k8s_version)),
                              **getattr(request.module, "CONTROL_PLANE", {}))
    cp.start()
    yield cp
    cp.stop()


@pytest.fixture(scope="module")
def kubelet(control_plane):
    sim = KubeletSim(control_plane.workdir, NODES).start()
    try:
        sim.wait_nodes_ready(timeout=90)
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def scene(control_plane, kubelet):
    import scene as scene_mod
    return scene_mod.Scene.build(control_plane, kubelet)


@pytest.fixture
def fresh_cluster(k8s_version, tmp_path):
    """fresh_cluster(nodes=NODES) -> (ControlPlane, KubeletSim): a cluster of the test's own, stopped after it."""
    made = []

    def make(nodes=NODES):
        cp = cluster.ControlPlane(k8s_version, str(tmp_path / ("k8s-%d" % len(made))))
        made.append(cp)
        cp.start()
        sim = KubeletSim(cp.workdir, nodes).start()
        made.append(sim)
        sim.wait_nodes_ready(timeout=90)
        return cp, sim

    yield make
    for x in reversed(made):
        x.stop()
