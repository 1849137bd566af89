"""The harness's own behaviour that needs no running cluster (or only etcd): binary discovery, skip reason,
CLI entry points, process cleanup when the test process dies."""

import lzma
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from realk8s import REALK8S_DIR, assets, cluster


@pytest.fixture
def fake_assets(tmp_path, monkeypatch):
    root = tmp_path / "assets"
    for v in ("v1.19", "v1.26"):
        (root / v).mkdir(parents=True)
    monkeypatch.setenv(assets.ENV_ASSETS, str(root))
    monkeypatch.delenv(assets.ENV_VERSIONS, raising=False)
    monkeypatch.setenv(assets.ENV_ETCD, "/bin/true")
    monkeypatch.setattr(assets, "build_dir", lambda: str(tmp_path / "build"))
    return root


def put(path, data, xz=False):
    if xz:
        with lzma.open(str(path) + ".xz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
        path.chmod(0o755)


def test_discovery_plain_and_xz(fake_assets):
    put(fake_assets / "v1.19" / "kube-apiserver", b"#!/bin/sh\necho api\n", xz=True)
    put(fake_assets / "v1.19" / "kube-controller-manager", b"#!/bin/sh\necho cm\n")
    put(fake_assets / "v1.26" / "kube-apiserver", b"x", xz=True)  # no controller-manager: not a usable version
    assert assets.available_versions() == ["v1.19"]
    bins = assets.binaries("v1.19")
    assert bins["kube-controller-manager"] == str(fake_assets / "v1.19" / "kube-controller-manager")
    api = bins["kube-apiserver"]
    assert api.startswith(assets.build_dir()) and os.access(api, os.X_OK)
    assert subprocess.run([api], capture_output=True, text=True).stdout == "api\n"
    mtime = os.path.getmtime(api)
    time.sleep(0.01)
    assert assets.binaries("v1.19")["kube-apiserver"] == api and os.path.getmtime(api) == mtime  # reused


def test_versions_variable_restricts(fake_assets, monkeypatch):
    for v in ("v1.19", "v1.26"):
        for b in assets.BINARIES:
            put(fake_assets / v / b, b"x")
    assert assets.available_versions() == ["v1.19", "v1.26"]
    monkeypatch.setenv(assets.ENV_VERSIONS, "1.26")
    assert assets.available_versions() == ["v1.26"]
    monkeypatch.setenv(assets.ENV_VERSIONS, "v1.30")
    assert assets.available_versions() == []
    assert assets.ENV_VERSIONS in assets.skip_reason()


def test_sha256sums_mismatch_refused(fake_assets):
    put(fake_assets / "v1.26" / "kube-apiserver", b"payload", xz=True)
    put(fake_assets / "v1.26" / "kube-controller-manager", b"x")
    (fake_assets / "SHA256SUMS").write_text("%s  v1.26/kube-apiserver.xz\n" % ("0" * 64))
    with pytest.raises(assets.AssetError, match="SHA256SUMS"):
        assets.binaries("v1.26")


def test_skip_reason_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.ENV_ASSETS, str(tmp_path / "nothing-here"))
    monkeypatch.delenv(assets.ENV_VERSIONS, raising=False)
    assert assets.available_versions() == []
    reason = assets.skip_reason()
    assert reason.startswith("real-server suites skipped:") and "$KUBEMEND_K8S_ASSETS" in reason
    assert "../shared/k8s" in reason


def test_cli_entry_points_parse(tmp_path):
    for mod in ("realk8s.cluster", "realk8s.kubelet"):
        out = subprocess.run([sys.executable, "-m", mod, "--help"], cwd=REALK8S_DIR, capture_output=True, text=True)
        assert out.returncode == 0 and "usage:" in out.stdout, out.stderr


@pytest.mark.skipif(not assets.available_versions(), reason=assets.skip_reason() or "")
def test_killed_test_process_leaves_nothing_running(tmp_path):
    """A test process killed with SIGKILL (no atexit, no fixture teardown) takes its etcd with it."""
    work = str(tmp_path / "cp")
    code = textwrap.dedent("""
        import sys, time
        sys.path.insert(0, %r)
        from realk8s.cluster import ControlPlane
        cp = ControlPlane(%r, %r)
        cp._start_etcd()
        print(cp.procs["etcd"].pid, flush=True)
        time.sleep(600)
    """ % (REALK8S_DIR, assets.available_versions()[0], work))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        etcd_pid = int(child.stdout.readline())
        assert cluster.leftover_processes([work]), "etcd should be running"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        end = time.time() + 10
        while time.time() < end and cluster.leftover_processes([work]):
            time.sleep(0.1)
        assert cluster.leftover_processes([work]) == []
        assert not os.path.exists("/proc/%d/cmdline" % etcd_pid) or "etcd" not in open(
            "/proc/%d/cmdline" % etcd_pid).read()
    finally:
        child.kill()


@pytest.mark.skipif(not assets.available_versions(), reason=assets.skip_reason() or "")
def test_cluster_by_hand(tmp_path):
    """`python3 -m realk8s.cluster --version V --workdir W --nodes n1` prints the admin kubeconfig, serves until
    SIGTERM, then exits 0 leaving nothing running."""
    version = assets.available_versions()[-1]
    work = str(tmp_path / "hand")
    proc = subprocess.Popen([sys.executable, "-m", "realk8s.cluster", "--version", version, "--workdir", work,
                             "--nodes", "n1"], cwd=REALK8S_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("KUBECONFIG="):
                break
        assert lines and lines[-1].strip() == "KUBECONFIG=%s/admin.conf" % work, "".join(lines)
        kubectl = os.environ.get("KUBECTL", "/usr/bin/kubectl")
        end = time.time() + 60
        out = ""
        while time.time() < end and " Ready " not in out:
            out = subprocess.run([kubectl, "--kubeconfig", work + "/admin.conf", "get", "node", "n1",
                                  "--no-headers"], capture_output=True, text=True).stdout
            time.sleep(0.5)
        assert " Ready " in out
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert cluster.leftover_processes([work]) == []
    finally:
        proc.kill()
        proc.wait()
