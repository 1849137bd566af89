"""Issue 15 on the real servers, the fast path: the key snapshot taken before the disaster (`kubemend keys
snapshot`, as the operator does by itself) gives the old public key back at once; the bridged kube-apiserver
accepts the old tokens; the recovery reports them as bridged, regenerates them and says when the bridge can go
(BridgeRetirable). The recovery of the key from the tokens alone (a minute of GMP per RSA key) is
test_bridge_recover.py. Both run with `make test-bridge` (KUBEMEND_BRIDGE_E2E=1): the full recovery with
the restarts makes this one ~6 min per version on the 2-core machine, too long for `make test`."""

import json
import os

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("KUBEMEND_BRIDGE_E2E") != "1",
                                reason="the bridge's real-server suite: run with `make test-bridge`")

import bridge
from prober import TokenProber
from realk8s import seed


@pytest.fixture(scope="module")
def seeded(control_plane, kubelet):
    desc = seed.install(control_plane, kubelet)
    bridge.ensure_namespace(control_plane)
    rc, out, err, _ = bridge.kubemend(control_plane, "keys", "snapshot")
    assert rc == 0, err
    assert "written" in out
    cm = control_plane.client().get("/api/v1/namespaces/%s/configmaps/kubemend-keys" % bridge.OPERATOR_NS)
    old_tokens = bridge.valid_tokens(control_plane)
    with TokenProber(control_plane) as prober:
        prober.wait_rounds(1)  # the pods' tokens captured while they are the current key's
        seed.disaster(control_plane, kubelet, desc)
        yield desc, cm, old_tokens, prober


def test_snapshot_holds_public_data_only(control_plane, seeded):
    _, cm, old_tokens, _ = seeded
    data = cm["data"]
    assert set(data) == {"jwks.json", "jwks-source", "ca.crt"}
    assert data["jwks-source"] == "/openid/v1/jwks"
    keys = json.loads(data["jwks.json"])["keys"]
    assert {k["kid"] for k in keys} == {bridge.kid_of(t) for t in old_tokens.values()}
    assert all("d" not in k and "p" not in k for k in keys)  # no private parts
    assert "BEGIN CERTIFICATE" in data["ca.crt"] and "PRIVATE" not in data["ca.crt"]


def test_snapshot_keeps_the_old_key_after_the_rebuild(control_plane, seeded):
    rc, out, err, _ = bridge.kubemend(control_plane, "keys", "snapshot")
    assert rc == 0, err
    cm = control_plane.client().get("/api/v1/namespaces/%s/configmaps/kubemend-keys" % bridge.OPERATOR_NS)
    kids = {k["kid"] for k in json.loads(cm["data"]["jwks.json"])["keys"]}
    old = {bridge.kid_of(t) for t in seeded[2].values()}
    assert old < kids and len(kids) == len(old) + 1


def test_recover_from_snapshot_then_bridge_and_retire(control_plane, seeded, tmp_path):
    _, _, old_tokens, prober = seeded
    pem = os.path.join(str(tmp_path), "sa-old.pub")
    rc, out, err, secs = bridge.kubemend(control_plane, "keys", "recover", "-o", pem)
    assert rc == 0, out + err
    assert "from the snapshot" in out and "kid-proven" in out, out
    assert "--service-account-key-file=/etc/kubernetes/pki/sa-old.pub" in out
    assert "/etc/kubernetes/manifests/kube-apiserver.yaml" in out
    assert "recovering a 2048-bit RSA key" not in err  # the snapshot needs no computation
    with open(pem) as f:
        assert f.read().strip() == bridge.lost_sa_pub(control_plane).strip()
    bridge.bridge_and_recover(control_plane, tmp_path, pem, old_tokens, prober)
