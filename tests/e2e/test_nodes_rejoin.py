"""The nodes step's NotReady part on the real server (issue 12 item 5): a node whose kubelet is gone is
tainted NoExecute by the real node lifecycle controller, its pod carries the tolerations the real
DefaultTolerationSeconds admission adds, and kubemend reports the seconds until the real taint manager evicts it
(timeAdded + 300 - now), a Warning Event, and the verify hook names the node while its kubelet-serving CSR waits.
The step runs through build/tools/kmstep --step nodes (cluster-info is the recovery suites' part)."""

import base64
import json
import os
import subprocess
import time

import pytest

import scene as scene_mod
from apisim import csrgen
from helpers import wait_for

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
