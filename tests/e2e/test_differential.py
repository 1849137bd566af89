"""apisim against the real kube-apiserver: differential.py's request sequence on both, compared.

For each real version available, apisim runs with the matching profile (v1.19 -> legacy, v1.26 -> modern) next to a
real control plane (etcd + kube-apiserver + kube-controller-manager); every difference not listed in
differential.KNOWN_DIFFERENCES fails the test, and so does a listed difference that no longer occurs.

Where the real server comes from, first match wins:
  1. KUBEMEND_DIFF_KUBECONFIG_V1_19 / KUBEMEND_DIFF_KUBECONFIG_V1_26: the admin kubeconfig (client certificate) of a
     server that is already running.  The sequence only touches its own objects (namespace kmdiff, CRD
     kmdiffs.diff.kubemend.io, CSRs kmdiff-*, node kmdiff-node) and removes them first.
  2. the realk8s harness (tests/realk8s): a fresh control plane per version from the binaries it finds.
  3. neither: the version is skipped with one line saying what to set.
"""

import os
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TESTS, "apisim"))

import differential  # noqa: E402
from apisim.testing import SimProcess  # noqa: E402

VERSIONS = {"v1.19": "legacy", "v1.26": "modern"}
ENV_KUBECONFIG = "KUBEMEND_DIFF_KUBECONFIG_%s"  # % "V1_26"


def _env_name(version):
    return ENV_KUBECONFIG % version.upper().replace(".", "_")


def _harness():
    """(assets, ControlPlane) of tests/realk8s, or None when the harness is not in this tree."""
    path = os.path.join(TESTS, "realk8s")
    if not os.path.isdir(os.path.join(path, "realk8s")):
        return None
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        from realk8s import assets
        from realk8s.cluster import ControlPlane
    except ImportError:
        return None
    return assets, ControlPlane


@pytest.fixture(params=sorted(VERSIONS), scope="module")
def real_kubeconfig(request):
    """The admin kubeconfig of a real kube-apiserver of request.param's version (see the module docstring)."""
    version = request.param
    env = os.environ.get(_env_name(version))
    if env:
        yield version, env
        return
    h = _harness()
    if h is None:
        pytest.skip("real kube-apiserver %s: no realk8s harness in this tree and %s is not set" % (
            version, _env_name(version)))
    assets, ControlPlane = h
    if version not in assets.available_versions():
        pytest.skip(assets.skip_reason() or "real kube-apiserver %s: not among $%s" % (version, assets.ENV_VERSIONS))
    workdir = tempfile.mkdtemp(prefix="kmdiff-real-%s-" % version)
    cp = ControlPlane(version, workdir)
    try:
        cp.start()
        kc = cp.admin_kubeconfig
        yield version, kc() if callable(kc) else kc
    finally:
        cp.stop()


def test_apisim_agrees_with_the_real_server(real_kubeconfig):
    version, kubeconfig = real_kubeconfig
    with SimProcess(extra_args=["--profile", VERSIONS[version]]) as sim:
        ra = differential.run(differential.Client(sim.kubeconfig), version)
    rb = differential.run(differential.Client(kubeconfig), version)
    unexpected, known, stale = differential.compare(ra, rb, version)
    print("%s: %d steps, %d known differences" % (version, len(ra), len(known)))
    assert not unexpected and not stale, differential.report(unexpected, known, stale, len(ra))


# ---- the check itself, without a real server -------------------------------------------------------------------

def test_compare_classifies_unexpected_known_and_stale(monkeypatch):
    known = [{"versions": ("v9",), "step": "s1", "paths": ["/body/a"], "reason": "r1"},
             {"versions": ("v9",), "step": "s2", "paths": ["/status"], "reason": "r2"},
             {"versions": ("v8",), "step": "s1", "paths": ["/body"], "reason": "other version"}]
    monkeypatch.setattr(differential, "KNOWN_DIFFERENCES", known)
    a = [("s1", 200, {"a": {"x": 1}, "b": [1, 2]}), ("s2", 200, None)]
    b = [("s1", 200, {"a": {"x": 2}, "b": [1, 3]}), ("s2", 200, None)]
    unexpected, found, stale = differential.compare(a, b, "v9")
    assert unexpected == [("s1", "/body/b/1", 2, 3)]
    assert found == [("s1", "/body/a/x", "r1")]
    assert [k["step"] for k in stale] == ["s2"]
    text = differential.report(unexpected, found, stale, 2)
    assert "DIFFERS  s1  /body/b/1" in text and "NO LONGER DIFFERS" in text


def test_normalize_keeps_what_must_agree():
    body = {"metadata": {"name": "kube-api-access-x7k2p", "uid": "0e3c2f8e-2b1a-4c55-9d1e-1f2a3b4c5d6e",
                         "resourceVersion": "42", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "items": ["worker-token-8fz4q", "worker-token-user", "cm-0"],
            "message": 'the UID in the precondition (1) does not match the UID in record (2)'}
    n = differential.normalize(body)
    assert n["metadata"] == {"name": "kube-api-access-<rand>", "uid": "<uid>", "resourceVersion": "<resourceVersion>",
                             "creationTimestamp": "<time>"}
    assert n["items"] == ["worker-token-<rand>", "worker-token-user", "cm-0"]
    assert n["message"] == "the UID in the precondition (<n>) does not match the UID in record (<n>)"


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_sequence_is_repeatable_on_apisim(version):
    """Two runs against apisim itself agree step by step: the normalization hides every value that legitimately
    changes between runs, so a difference against the real server is a difference in behaviour."""
    with SimProcess(extra_args=["--profile", VERSIONS[version]]) as sim:
        client = differential.Client(sim.kubeconfig)
        r1 = differential.run(client, version)
        r2 = differential.run(client, version)
    diffs = [(n1, p) for (n1, s1, b1), (n2, s2, b2) in zip(r1, r2)
             for p in differential.diff_paths({"status": s1, "body": b1}, {"status": s2, "body": b2})]
    assert len(r1) == len(r2) and not diffs, diffs


def test_readme_lists_the_known_differences():
    """tests/apisim/README.md's "Known differences from the real server" table has exactly KNOWN_DIFFERENCES."""
    with open(os.path.join(TESTS, "apisim", "README.md")) as f:
        text = f.read()
    section = text[text.index("## Known differences from the real server"):]
    rows = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows.add((cells[0].strip("`"), tuple(v.strip() for v in cells[1].split(","))))
    want = {(k["step"], tuple(k["versions"])) for k in differential.KNOWN_DIFFERENCES}
    assert rows == want, (sorted(rows - want), sorted(want - rows))
