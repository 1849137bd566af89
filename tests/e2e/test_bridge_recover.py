"""Issue 15 on the real servers from the cluster alone: no snapshot; `kubemend keys recover` recovers the lost
RSA-2048 public key from the stale token Secrets (a gcd of two tokens: about a minute of CPU, more on a busy
machine), proves it by kid, and the bridge and the recovery follow (bridge.py). Behind `make test-bridge`
(KUBEMEND_BRIDGE_E2E=1): too slow for `make test`."""

import os

import pytest

import bridge
from prober import TokenProber
from realk8s import seed

pytestmark = pytest.mark.skipif(os.environ.get("KUBEMEND_BRIDGE_E2E") != "1",
                                reason="minutes of RSA key recovery: run with `make test-bridge`")


def test_recover_from_tokens_then_bridge_and_retire(control_plane, kubelet, tmp_path):
    desc = seed.install(control_plane, kubelet)
    old_tokens = bridge.valid_tokens(control_plane)
    with TokenProber(control_plane) as prober:
        prober.wait_rounds(1)  # the pods' tokens captured while they are the current key's
        seed.disaster(control_plane, kubelet, desc)
        recover_and_bridge(control_plane, tmp_path, old_tokens, prober)


def recover_and_bridge(control_plane, tmp_path, old_tokens, prober):
    pem = os.path.join(str(tmp_path), "sa-old.pub")
    rc, out, err, secs = bridge.kubemend(control_plane, "keys", "recover", "-o", pem, timeout=1800)
    print("keys recover from tokens: %.1f s" % secs)
    assert rc == 0, out + err
    assert "from the tokens" in out and "kid-proven" in out, out
    assert "snapshot kubemend-system/kubemend-keys not read" not in err  # absent: 404, not an error
    with open(pem) as f:
        assert f.read().strip() == bridge.lost_sa_pub(control_plane).strip()
    bridge.bridge_and_recover(control_plane, tmp_path, pem, old_tokens, prober)
