"""Smoke suite of the real-server harness (tests/realk8s), on every available version: the control plane comes
up, the kubelet/scheduler simulator runs workloads, the PKI-rebuild disaster behaves as the real server does,
kubelet-serving CSRs are signed by the real signer. The tests of this module run in order on one cluster.

Last, on the same cluster, the nodes step's NotReady part (issue 12 item 5): a node whose kubelet is gone is
tainted NoExecute by the real node lifecycle controller, its pod carries the tolerations the real
DefaultTolerationSeconds admission adds, and kubemend reports the seconds until the real taint manager evicts it
(timeAdded + 300 - now), a Warning Event, a bootstrap token Secret the server accepts, and the verify hook names
the node while its kubelet-serving CSR waits (build/tools/kmstep --step nodes)."""

import base64
import json
import os
import subprocess
import time

import pytest
from apisim import csrgen

from realk8s.client import Client
from realk8s.pki import cert_not_before, load_kubeconfig

import scene as scene_mod
from helpers import extauth, pems, wait_for


def test_control_plane_up(control_plane, k8s_version):
    cp = control_plane
    status, text = cp.request("GET", "/readyz", raw=True)
    assert status == 200, text
    assert cp.client().get("/version")["gitVersion"].startswith(k8s_version + ".")
    out = cp.kubectl("get", "namespaces", "-o", "name").stdout.split()
    assert {"namespace/default", "namespace/kube-system", "namespace/kube-public"} <= set(out)
    sa = cp.client().get("/api/v1/namespaces/default/serviceaccounts/default")
    assert bool(sa.get("secrets")) == cp.auto_token_secrets  # < 1.24: auto-generated token Secret
    status, cm = cp.request("GET", "/api/v1/namespaces/default/configmaps/kube-root-ca.crt")
    assert (status == 200) == cp.has_root_ca_configmaps
    data = extauth(cp)
    assert pems(data["client-ca-file"]) == [cp.pki.ca_pem()]
    assert pems(data["requestheader-client-ca-file"]) == [cp.pki.front_proxy_ca_pem()]
    assert cp.running().keys() == {"etcd", "kube-apiserver", "kube-controller-manager"}


def test_nodes_registered_as_themselves(control_plane, kubelet):
    nodes = {n["metadata"]["name"]: n for n in control_plane.client().get("/api/v1/nodes")["items"]}
    assert set(nodes) == {"cp-1", "worker-1", "worker-2"}
    for name, node in nodes.items():
        addrs = {a["type"]: a["address"] for a in node["status"]["addresses"]}
        assert addrs == {"InternalIP": kubelet.node_ip(name), "Hostname": name}
        assert addrs["InternalIP"].startswith("10.0.")
        lease = control_plane.client().get("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/" + name)
        assert lease["spec"]["holderIdentity"] == name
    # the Node authorizer + NodeRestriction are on: a node cannot touch another node's status
    c = kubelet.node_client("worker-1")
    st, body = c.request("PATCH", "/api/v1/nodes/worker-2/status", {"status": {}},
                         content_type="application/merge-patch+json")
    assert st == 403, body


def test_deployment_pods_become_ready(control_plane, kubelet):
    cp = control_plane
    cp.kubectl("create", "deployment", "web", "--image=registry.example/web:1", "--replicas=4")
    wait_for(lambda: cp.kubectl("get", "deploy", "web", "-o", "jsonpath={.status.readyReplicas}").stdout == "4",
             what="deployment web ready")
    pods = cp.client().get("/api/v1/namespaces/default/pods?labelSelector=app%3Dweb")["items"]
    assert len(pods) == 4
    for p in pods:
        st = p["status"]
        assert st["phase"] == "Running" and st["podIP"] and st["startTime"]
        assert st["hostIP"] == kubelet.node_ip(p["spec"]["nodeName"])
        assert all(cs["ready"] for cs in st["containerStatuses"])
        assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"


def test_daemonset_pod_on_every_node(control_plane, kubelet):
    cp = control_plane
    cp.kubectl("apply", "-f", "-", input="""
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: registry.example/agent:1}]}
""")
    wait_for(lambda: cp.kubectl("get", "ds", "agent", "-o", "jsonpath={.status.numberReady}").stdout == "3",
             what="daemonset agent ready")
    pods = cp.client().get("/api/v1/namespaces/default/pods?labelSelector=app%3Dagent")["items"]
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["cp-1", "worker-1", "worker-2"]
    # DaemonSet pods are placed by the scheduler through required node affinity on metadata.name
    for p in pods:
        terms = p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == [p["spec"]["nodeName"]]


def test_graceful_delete_is_finalized(control_plane, kubelet):
    cp = control_plane
    pod = cp.client().get("/api/v1/namespaces/default/pods?labelSelector=app%3Dweb")["items"][0]
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    marked = cp.client().delete("/api/v1/namespaces/default/pods/" + name)
    assert marked["metadata"]["deletionTimestamp"] and marked["metadata"]["deletionGracePeriodSeconds"] == 30

    def gone():
        st, body = cp.request("GET", "/api/v1/namespaces/default/pods/" + name)
        return st == 404 or body["metadata"]["uid"] != uid
    wait_for(gone, timeout=20, what="graceful deletion finalized by the kubelet")
    assert kubelet.counters["finalized"] >= 1
    wait_for(lambda: cp.kubectl("get", "deploy", "web", "-o", "jsonpath={.status.readyReplicas}").stdout == "4",
             what="replacement pod ready")


def test_rebuild_pki(control_plane, kubelet):
    cp = control_plane
    cp.kubectl("create", "serviceaccount", "app")
    old_token = cp.token_for("default", "app")
    assert cp.token_review(old_token).get("authenticated") is True
    old_ca, old_fp = cp.pki.ca_pem(), cp.pki.front_proxy_ca_pem()
    old_admin = load_kubeconfig(cp.admin_kubeconfig)

    cp.rebuild_pki()

    new_ca, new_fp = cp.pki.ca_pem(), cp.pki.front_proxy_ca_pem()
    assert new_ca != old_ca and new_fp != old_fp
    assert cert_not_before(new_ca) > cert_not_before(old_ca)
    review = cp.token_review(old_token)
    assert not review.get("authenticated") and "invalid bearer token" in review.get("error", "")
    st, body = Client(cp.url, new_ca, token=old_token).request("GET", "/api/v1/namespaces/default/pods")
    assert st == 401 and body["reason"] == "Unauthorized"
    new_token = cp.token_for("default", "app")
    st, _ = Client(cp.url, new_ca, token=new_token).request("GET", "/api")
    assert st == 200
    # the old admin certificate is no longer accepted (only the new CA is in --client-ca-file)
    st, _ = Client(cp.url, new_ca, old_admin[2], old_admin[3]).request("GET", "/api")
    assert st == 401
    # extension-apiserver-authentication keeps the old CAs next to the new ones (the real server merges)
    data = wait_for(lambda: (lambda d: d if len(pems(d["client-ca-file"])) == 2 else None)(extauth(cp)),
                    what="extauth with 2 CAs")
    assert sorted(pems(data["client-ca-file"])) == sorted([old_ca, new_ca])
    assert sorted(pems(data["requestheader-client-ca-file"])) == sorted([old_fp, new_fp])
    if cp.has_root_ca_configmaps:
        wait_for(lambda: cp.client().get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt")["data"][
            "ca.crt"] == new_ca, what="kube-root-ca.crt with the new CA")


def test_kubelets_rejoin_with_new_ca(control_plane, kubelet):
    cp = control_plane
    kubelet.rejoin()
    kubelet.wait_nodes_ready(timeout=60)
    _, ca, cert, _, _ = load_kubeconfig(kubelet._conf("worker-1"))
    assert ca == cp.pki.ca_pem()
    out = subprocess.run(["openssl", "verify", "-CAfile", cp.ca_file], input=cert, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # the simulator keeps working as the nodes with their new certificates: a new deployment becomes ready
    cp.kubectl("create", "deployment", "after", "--image=registry.example/after:1", "--replicas=2")
    wait_for(lambda: cp.kubectl("get", "deploy", "after", "-o", "jsonpath={.status.readyReplicas}").stdout == "2",
             what="deployment after the rebuild ready")


def test_kubelet_serving_csr_signed_by_real_signer(control_plane, kubelet):
    cp = control_plane
    csr = kubelet.create_serving_csr("worker-1", name="worker-1-serving")
    assert csr["spec"]["username"] == "system:node:worker-1"
    assert "system:nodes" in csr["spec"]["groups"]
    assert csr["spec"]["signerName"] == "kubernetes.io/kubelet-serving"
    forged = kubelet.create_serving_csr("worker-1", forged=True, other="worker-2", name="worker-1-steals-ip")
    assert forged["spec"]["username"] == "system:node:worker-1"
    cp.kubectl("certificate", "approve", "worker-1-serving")
    path = "/apis/certificates.k8s.io/v1/certificatesigningrequests/"
    cert = wait_for(lambda: cp.client().get(path + "worker-1-serving")["status"].get("certificate"),
                    what="status.certificate")
    pem = base64.b64decode(cert).decode()
    out = subprocess.run(["openssl", "verify", "-CAfile", cp.ca_file], input=pem, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = subprocess.run(["openssl", "x509", "-noout", "-text"], input=pem, capture_output=True, text=True).stdout
    assert "DNS:worker-1" in text and "IP Address:" + kubelet.node_ip("worker-1") in text
    time.sleep(2)  # nothing approves or signs the forged one by itself
    st = cp.client().get(path + "worker-1-steals-ip").get("status") or {}
    assert not st.get("conditions") and not st.get("certificate")


# ---- the nodes step on the real server (see the module docstring) ------------------------------------------

GONE = "worker-gone"


def _kmstep(cp, spec, verify=False):
    args = [os.path.join(scene_mod.TOOLS, "kmstep"), "--kubeconfig", cp.admin_kubeconfig, "--step", "nodes",
            "--recovery", "e2e", "--spec", json.dumps(spec)] + (["--verify"] if verify else [])
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    lines = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    return p, {k: v for x in lines for k, v in x.items() if k in ("result", "verify")}, \
        [x["event"] for x in lines if "event" in x]


def _taint(node):
    return next((t for t in (node.get("spec") or {}).get("taints") or [] if t["effect"] == "NoExecute" and
                 t["key"] in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")), None)


@pytest.fixture(scope="module")
def gone(control_plane, kubelet):
    """A Node no kubelet heartbeats for (Ready False), a pod bound to it and its pending serving CSR."""
    c = control_plane.client()
    c.create("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": GONE}})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    c.patch("/api/v1/nodes/%s/status" % GONE, {"status": {
        "addresses": [{"type": "InternalIP", "address": "10.0.9.9"}, {"type": "Hostname", "address": GONE}],
        "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "gone",
                        "lastHeartbeatTime": now, "lastTransitionTime": now}]}}, kind="strategic")
    pod = c.create("/api/v1/namespaces/default/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "on-the-gone-node"},
        "spec": {"nodeName": GONE, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}})
    wait_for(lambda: _taint(c.get("/api/v1/nodes/" + GONE)), 120, "the node lifecycle controller's NoExecute taint")
    return pod


def test_countdown_matches_the_real_taint_and_tolerations(control_plane, gone):
    tol = {t.get("key"): t.get("tolerationSeconds") for t in gone["spec"]["tolerations"]}
    assert tol["node.kubernetes.io/not-ready"] == 300 and tol["node.kubernetes.io/unreachable"] == 300
    before = time.time()
    p, out, events = _kmstep(control_plane, {"updateClusterInfo": False, "createJoinToken": True})
    after = time.time()
    node = control_plane.client().get("/api/v1/nodes/" + GONE)
    taint = _taint(node)
    st = out["result"]["status"]
    assert out["result"]["condition"]["reason"] == "NodesNotReady", out
    entry = next(e for e in st["notReady"] if e["name"] == GONE)
    assert entry["taint"] == taint["key"] and entry["pods"] == 1
    added = scene_mod.epoch(taint["timeAdded"])
    assert added + 300 - after - 2 <= entry["evictionInSeconds"] <= added + 300 - before + 2, (entry, taint)
    assert any(e["type"] == "Warning" and e["reason"] == "NodesNotReady" and GONE in e["message"] for e in events)
    # the token: a real bootstrap token Secret the apiserver accepts, its secret never printed
    name = st["joinToken"]["secret"].split("/")[1]
    s = control_plane.client().get("/api/v1/namespaces/kube-system/secrets/" + name)
    assert s["type"] == "bootstrap.kubernetes.io/token"
    secret = base64.b64decode(s["data"]["token-secret"]).decode()
    assert secret not in p.stdout + p.stderr
    assert "--node-name " + GONE in entry["joinCommand"]


def test_verify_names_the_node_waiting_on_its_csr(control_plane, gone):
    c = control_plane.client()
    pem = csrgen.build_csr(csrgen.key_for("e2e-" + GONE), cn="system:node:" + GONE, orgs=["system:nodes"],
                           dns=[GONE], ips=["10.0.9.9"])
    # created as the node (impersonated by the admin): spec.username is system:node:<name>
    st, obj = c.request("POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", {
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "csr-" + GONE},
        "spec": {"request": csrgen.csr_request_b64(pem), "signerName": "kubernetes.io/kubelet-serving",
                 "usages": ["digital signature", "key encipherment", "server auth"]}},
        headers={"Impersonate-User": "system:node:" + GONE, "Impersonate-Group": "system:nodes"})
    assert st == 201, obj
    assert obj["spec"]["username"] == "system:node:" + GONE
    _, out, _ = _kmstep(control_plane, {"updateClusterInfo": False}, verify=True)
    assert out["verify"]["status"] == "False" and out["verify"]["reason"] == "NodesWaitingOnCSR", out
    assert GONE in out["verify"]["message"]


def test_csr_with_an_address_another_node_reports_denied(control_plane, kubelet):
    """A node may write any address into its own status (the NodeRestriction admission allows it): worker-1 adds
    worker-2's IP, then asks for a serving certificate naming it; kubemend denies it (issue 12 item 8)."""
    other_ip = kubelet.node_ip("worker-2")
    client = kubelet.node_client("worker-1")
    client.patch("/api/v1/nodes/worker-1/status", {"status": {"addresses": [
        {"type": "ExternalIP", "address": other_ip}]}}, kind="strategic")
    addrs = {(a["type"], a["address"]) for a in
             control_plane.client().get("/api/v1/nodes/worker-1")["status"]["addresses"]}
    assert ("ExternalIP", other_ip) in addrs  # the server took it
    kubelet.create_serving_csr("worker-1", kind="otherNodeIP", other="worker-2", name="worker-1-claims-worker-2")
    args = [os.path.join(scene_mod.TOOLS, "kmstep"), "--kubeconfig", control_plane.admin_kubeconfig, "--step",
            "csr", "--recovery", "e2e"]
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    conds = control_plane.client().get(
        "/apis/certificates.k8s.io/v1/certificatesigningrequests/worker-1-claims-worker-2")["status"]["conditions"]
    assert [c["type"] for c in conds] == ["Denied"], conds
    assert conds[0]["message"].startswith("ipAddressOfOtherNode:") and "worker-2" in conds[0]["message"], conds
