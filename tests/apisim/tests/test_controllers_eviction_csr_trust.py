"""Eviction with PDBs, the CSR signer/approver and the apiserver trust controller (in-process)."""

import base64
import subprocess

import pytest

from apisim import csrgen
from apisim.controllers import front_proxy_ca, local_sim, split_pem, wait_for
from apisim.errors import ApiError
from conftest import fixture

CSR = "certificates.k8s.io/certificatesigningrequests"


@pytest.fixture
def sim():
    s = local_sim(kubelet_delay=0.05)
    st = s.store
    st.create("namespaces", {"metadata": {"name": "fixtures"}})
    st.create("nodes", {"metadata": {"name": "fx-node1"}, "status": {"addresses": [
        {"type": "InternalIP", "address": "192.0.2.10"}]}})
    yield s
    s.controllers.stop()


def ready(p):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions", []))


def mkpod(sim, name, node="fx-node1"):
    spec = {"containers": [{"name": "main", "image": "x:1"}]}
    if node:
        spec["nodeName"] = node
    sim.store.create("pods", {"metadata": {"name": name, "namespace": "fixtures", "labels": {"app": "fx-evict"}},
                              "spec": spec})


def evict(sim, name, version="policy/v1beta1"):
    return sim.controllers.evict("fixtures", name, {"apiVersion": version, "kind": "Eviction",
                                                    "metadata": {"name": name, "namespace": "fixtures"}}, version)


def test_eviction_blocked_then_allowed_exact_bodies(sim):
    mkpod(sim, "fx-pod2")
    wait_for(lambda: ready(sim.store.get("pods", "fixtures", "fx-pod2")))
    sim.store.create("policy/poddisruptionbudgets", {"metadata": {"name": "fx-pdb", "namespace": "fixtures"},
                                                     "spec": {"minAvailable": 1,
                                                              "selector": {"matchLabels": {"app": "fx-evict"}}}})
    pdb = wait_for(lambda: (sim.store.get("policy/poddisruptionbudgets", "fixtures", "fx-pdb").get("status") or {})
                   .get("observedGeneration") == 1 and sim.store.get("policy/poddisruptionbudgets", "fixtures",
                                                                     "fx-pdb"))
    st = pdb["status"]
    assert (st["currentHealthy"], st["desiredHealthy"], st["disruptionsAllowed"], st["expectedPods"]) == (1, 1, 0, 1)
    with pytest.raises(ApiError) as e:
        evict(sim, "fx-pod2")
    assert e.value.code == 429
    assert e.value.status() == fixture("error-429-eviction-pdb.json")
    # a pending pod ignores the PDB
    mkpod(sim, "fx-pod1", node=None)
    sim.controllers.stop()  # keep fx-pod1 Pending (no scheduler/kubelet)
    assert evict(sim, "fx-pod1") == (201, fixture("eviction-pending-pod-ignores-pdb.json"))
    assert sim.store.get("pods", "fixtures", "fx-pod1") is None  # unscheduled: deleted at once


def test_eviction_allowed_decrements_budget_and_deletes_gracefully(sim):
    for n in ("a", "b"):
        mkpod(sim, n)
    wait_for(lambda: all(ready(sim.store.get("pods", "fixtures", n)) for n in ("a", "b")))
    sim.store.create("policy/poddisruptionbudgets", {"metadata": {"name": "pdb", "namespace": "fixtures"},
                                                     "spec": {"maxUnavailable": "50%",
                                                              "selector": {"matchLabels": {"app": "fx-evict"}}}})
    wait_for(lambda: (sim.store.get("policy/poddisruptionbudgets", "fixtures", "pdb").get("status") or {})
             .get("disruptionsAllowed") == 1)
    sim.controllers.stop()  # freeze the kubelet / disruption controller to see exactly what the eviction wrote
    assert evict(sim, "a", "policy/v1") == (201, fixture("eviction-success-no-pdb.json"))
    st = sim.store.get("policy/poddisruptionbudgets", "fixtures", "pdb")["status"]
    assert st["disruptionsAllowed"] == 0 and "a" in st["disruptedPods"]
    a = sim.store.get("pods", "fixtures", "a")
    assert a["metadata"]["deletionTimestamp"] and a["metadata"]["deletionGracePeriodSeconds"] == 30
    with pytest.raises(ApiError) as e:
        evict(sim, "b", "policy/v1")
    assert e.value.code == 429
    assert e.value.status()["details"]["causes"][0]["message"].startswith("The disruption budget pdb needs 1 ")


def test_eviction_errors(sim):
    with pytest.raises(ApiError) as e:
        evict(sim, "nope")
    assert e.value.code == 404 and e.value.message == 'pods "nope" not found'
    legacy = local_sim(profile="legacy")
    try:
        legacy.store.create("namespaces", {"metadata": {"name": "fixtures"}})
        with pytest.raises(ApiError) as e:
            evict(legacy, "fx-no-such-pod", "policy/v1")
        assert e.value.status() == fixture("error-eviction-policy-v1-body.json")
    finally:
        legacy.controllers.stop()


def make_csr(sim, name, signer="kubernetes.io/kubelet-serving", cn="system:node:fx-node1", orgs=("system:nodes",),
             dns=("fx-node1",), ips=("192.0.2.10",), emails=(), usages=None, user="system:node:fx-node1"):
    pem = csrgen.build_csr(csrgen.key_for("fx-node1"), cn, list(orgs), list(dns), list(ips), list(emails))
    sim.store.create(CSR, {"metadata": {"name": name}, "spec": {
        "request": csrgen.csr_request_b64(pem), "signerName": signer,
        "usages": usages or ["digital signature", "key encipherment", "server auth"], "username": user,
        "groups": ["system:nodes", "system:authenticated"]}})


def approve(sim, name, typ="Approved"):
    def fn(o):
        o.setdefault("status", {}).setdefault("conditions", []).append(
            {"type": typ, "status": "True", "reason": "Test", "message": "by test"})
    sim.store.mutate(CSR, None, name, fn, subresource="approval")


def test_csr_signed_only_after_approval_never_when_denied(sim):
    make_csr(sim, "ok")
    make_csr(sim, "denied")
    sim.controllers.wait_idle()
    assert "certificate" not in (sim.store.get(CSR, None, "ok").get("status") or {})
    approve(sim, "ok")
    approve(sim, "denied", "Denied")
    cert_b64 = wait_for(lambda: (sim.store.get(CSR, None, "ok").get("status") or {}).get("certificate"))
    pem = base64.b64decode(cert_b64).decode()
    text = subprocess.run(["openssl", "x509", "-noout", "-text"], input=pem.encode(), capture_output=True,
                          check=True).stdout.decode()
    assert "DNS:fx-node1" in text and "IP Address:192.0.2.10" in text and "TLS Web Server Authentication" in text
    ca = sim.pki.ca_cert_pem
    with open(sim.workdir + "/ca-test.pem", "w") as f:
        f.write(ca)
    assert subprocess.run(["openssl", "verify", "-CAfile", sim.workdir + "/ca-test.pem"], input=pem.encode(),
                          capture_output=True).returncode == 0
    sim.controllers.wait_idle()
    assert "certificate" not in (sim.store.get(CSR, None, "denied").get("status") or {})


def test_csr_signer_validation_failure_condition(sim):
    make_csr(sim, "email", emails=("root@example.com",))
    approve(sim, "email")
    st = wait_for(lambda: [c for c in (sim.store.get(CSR, None, "email").get("status") or {}).get("conditions", [])
                           if c["type"] == "Failed"])
    assert st[0]["reason"] == "SignerValidationFailure"
    assert st[0]["message"] == "Email subjectAltNames are not allowed"
    assert "certificate" not in sim.store.get(CSR, None, "email")["status"]


def test_kubelet_client_csr_autoapproved_only_with_selfnodeclient_binding(sim):
    make_csr(sim, "client", signer="kubernetes.io/kube-apiserver-client-kubelet", dns=(), ips=(),
             usages=["digital signature", "key encipherment", "client auth"])
    sim.controllers.wait_idle()
    assert not (sim.store.get(CSR, None, "client").get("status") or {}).get("conditions")
    sim.store.create("rbac.authorization.k8s.io/clusterrolebindings", fixture(
        "create-clusterrolebinding-selfnodeclient.json") | {"metadata": {"name": "autoapprove"}})
    c = wait_for(lambda: (sim.store.get(CSR, None, "client").get("status") or {}).get("certificate") and
                 sim.store.get(CSR, None, "client"))
    cond = c["status"]["conditions"][0]
    want = fixture("get-csr-kube-apiserver-client-kubelet-autoapproved.json")["status"]["conditions"][0]
    assert (cond["type"], cond["reason"], cond["message"]) == (want["type"], want["reason"], want["message"])


def bundles(sim):
    d = sim.store.get("configmaps", "kube-system", "extension-apiserver-authentication")["data"]
    return split_pem(d["client-ca-file"]), split_pem(d["requestheader-client-ca-file"]), d


def test_trust_controller_merges_old_and_new_after_rebuild(sim):
    c, f, d = wait_for(lambda: sim.store.get("configmaps", "kube-system", "extension-apiserver-authentication")
                       and bundles(sim))
    want = fixture("get-configmap-extension-apiserver-authentication.json")["data"]
    assert set(d) == set(want)
    for k in ("requestheader-allowed-names", "requestheader-extra-headers-prefix", "requestheader-group-headers",
              "requestheader-username-headers"):
        assert d[k] == want[k]
    old_ca, old_front = sim.pki.ca_cert_pem, front_proxy_ca(sim.pki)
    assert c == [old_ca] and f == [old_front]
    sim.pki.rebuild()
    c, f, _ = wait_for(lambda: len(bundles(sim)[0]) == 2 and bundles(sim))
    assert c == [old_ca, sim.pki.ca_cert_pem]  # old first, new appended
    assert f[0] == old_front and len(f) == 2 and f[1] != old_front
    # removing the old CA sticks: the apiserver never re-adds a certificate it does not hold
    sim.store.mutate("configmaps", "kube-system", "extension-apiserver-authentication",
                     lambda o: o["data"].update({"client-ca-file": c[1], "requestheader-client-ca-file": f[1]}))
    sim.controllers.queues["trust"].add("sync")
    sim.controllers.wait_idle()
    assert bundles(sim)[0] == [sim.pki.ca_cert_pem]


def test_stale_apiserver_readds_old_ca(sim):
    wait_for(lambda: sim.store.get("configmaps", "kube-system", "extension-apiserver-authentication"))
    old_ca = sim.pki.ca_cert_pem
    sim.pki.rebuild()
    wait_for(lambda: len(bundles(sim)[0]) == 2)
    sim.controllers.set_stale_apiserver(True, interval=0.1)
    sim.store.mutate("configmaps", "kube-system", "extension-apiserver-authentication",
                     lambda o: o["data"].update({"client-ca-file": sim.pki.ca_cert_pem}))
    c = wait_for(lambda: len(bundles(sim)[0]) == 2 and bundles(sim)[0])
    assert c == [sim.pki.ca_cert_pem, old_ca]
