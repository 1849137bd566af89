"""`make demo` end to end: tests/demo.sh against apisim's seed cluster must end Succeeded with the
expected before/after story (tests the script the README's first command runs)."""

import os
import re
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_demo_end_to_end(tmp_path):
    env = dict(os.environ, DEMO_OUT=str(tmp_path / "demo-out"))
    cp = subprocess.run([os.path.join(REPO, "tests", "demo.sh"), os.environ["KUBEMEND_BIN"]], env=env,
                        capture_output=True, text=True, timeout=600)
    out = re.sub(r"\x1b\[[0-9;]*m", "", cp.stdout)
    assert cp.returncode == 0, out[-3000:] + cp.stderr[-3000:]
    summary = out[out.index("\nSummary"):]
    # tokens: every stale one healed; only the Secrets kubemend must not touch stay rejected
    assert "before: token Secrets: 16, valid: 2, rejected by the API server: 14" in summary
    assert "after:  token Secrets: 16, valid: 13, rejected by the API server: 3" in summary
    after = out[out.index("== AFTER"):]
    assert "billing/invoicer-token-old (being deleted" in after
    assert "shop/frontend-manual-token (no service-account annotations" in after
    assert "ci/ci-runner-broken-token (not a JWT" in after
    # the CA bundles lost exactly the superseded old CAs
    assert after.count("CA certificate(s)") == 2
    assert "client-ca-file: 1 CA certificate(s)" in after
    assert "client-ca-file: CN=kubernetes (superseded)" in summary
    # CSRs: the valid ones approved, every forged one denied with its check
    assert "approved 3, denied 10, pending 0" in summary
    for line in ("csr-worker-1-steals-ip: Denied ipAddressNotOwned", "csr-not-a-node: Denied requesterNotNode",
                 "csr-worker-2-serving: Approved allChecksPassed"):
        assert line in summary
    # pods: kube-system first, ownerless pod kept and reported
    assert re.search(r"namespaces done 9/9 in order kube-system, monitoring,", summary)
    assert "needs a manual restart (ownerless, kept): ci/ci-runner-manual" in summary
    assert "Succeeded=True (Completed)" in summary
    # kubectl showed the story
    assert "kubectl describe crec after-pki-rebuild" in out and "WorkloadRestarted" in out
