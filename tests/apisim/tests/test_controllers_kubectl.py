"""Controllers seen through the HTTPS server and kubectl (SimProcess)."""

import json

import pytest

from apisim.controllers import split_pem, wait_for
from apisim.testing import SimProcess
from conftest import fixture

CM = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"


@pytest.fixture(scope="module")
def cluster():
    env = {"APISIM_CONTROLLER_OPTS": "grace_cap=0.1,csr_sign_delay=0.05,token_delay=0.05"}
    with SimProcess(extra_args=["--kubelet-delay", "0.05"], env=env) as s:
        yield s


def test_empty_cluster_runs_a_kubectl_deployment(cluster):
    cluster.kubectl("create", "deployment", "web", "--image=nginx:1.25", "--replicas=2")
    r = cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s")
    assert 'deployment "web" successfully rolled out' in r.stdout
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert [n["metadata"]["name"] for n in nodes] == ["sim-node-1"]
    cluster.kubectl("rollout", "restart", "deployment/web")
    r = cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s")
    assert "successfully rolled out" in r.stdout
    _, d = cluster.request("GET", "/apis/apps/v1/namespaces/default/deployments/web")
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"


def test_eviction_over_https_with_pdb(cluster):
    cluster.kubectl("create", "deployment", "guarded", "--image=nginx:1.25", "--replicas=1")
    cluster.kubectl("rollout", "status", "deployment/guarded", "--timeout=60s")
    # (kubectl create poddisruptionbudget sends protobuf, which the server does not decode: POST JSON instead)
    status, _ = cluster.request("POST", "/apis/policy/v1/namespaces/default/poddisruptionbudgets", {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "fx-pdb"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}})
    assert status == 201
    wait_for(lambda: (cluster.request("GET", "/apis/policy/v1/namespaces/default/poddisruptionbudgets/fx-pdb")[1]
                      .get("status") or {}).get("observedGeneration") == 1)
    pod = json.loads(cluster.kubectl("get", "pods", "-l", "app=guarded", "-o", "json").stdout)["items"][0]
    name = pod["metadata"]["name"]
    status, body = cluster.request("POST", "/api/v1/namespaces/default/pods/%s/eviction" % name, {
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}})
    want = fixture("error-429-eviction-pdb.json")
    assert (status, body) == (429, want)
    cluster.kubectl("delete", "poddisruptionbudget", "fx-pdb")
    status, body = cluster.request("POST", "/api/v1/namespaces/default/pods/%s/eviction" % name, {
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}})
    assert (status, body) == (201, fixture("eviction-success-no-pdb.json"))
    wait_for(lambda: cluster.request("GET", "/api/v1/namespaces/default/pods/" + name)[0] == 404)


def test_csr_approved_with_kubectl_gets_certificate(cluster):
    from apisim import csrgen
    pem = csrgen.build_csr(csrgen.key_for("n9"), "system:node:n9", ["system:nodes"], ["n9"], ["192.0.2.99"])
    status, _ = cluster.request("POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", {
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "n9"},
        "spec": {"request": csrgen.csr_request_b64(pem), "signerName": "kubernetes.io/kubelet-serving",
                 "usages": ["digital signature", "key encipherment", "server auth"]}})
    assert status == 201
    cluster.kubectl("certificate", "approve", "n9")
    wait_for(lambda: (cluster.request("GET", "/apis/certificates.k8s.io/v1/certificatesigningrequests/n9")[1]
                      .get("status") or {}).get("certificate"))


def test_node_down_via_sim_control(cluster):
    cluster.kubectl("create", "deployment", "downer", "--image=nginx:1.25", "--replicas=1")
    cluster.kubectl("rollout", "status", "deployment/downer", "--timeout=60s")
    cluster.sim("POST", "/_sim/nodes/sim-node-1/down")
    try:
        def not_ready():
            items = json.loads(cluster.kubectl("get", "pods", "-l", "app=downer", "-o", "json").stdout)["items"]
            return items and all(not any(c["type"] == "Ready" and c["status"] == "True"
                                         for c in p["status"].get("conditions", [])) for p in items)
        wait_for(not_ready)
        node = json.loads(cluster.kubectl("get", "node", "sim-node-1", "-o", "json").stdout)
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"][0]
        assert (ready["status"], ready["reason"]) == ("Unknown", "NodeStatusUnknown")
    finally:
        cluster.sim("POST", "/_sim/nodes/sim-node-1/up")
    cluster.kubectl("rollout", "status", "deployment/downer", "--timeout=60s")


def test_trust_controller_and_stale_apiserver_over_https():
    env = {"APISIM_CONTROLLER_OPTS": "stale_apiserver=1,stale_interval=0.2"}
    with SimProcess(extra_args=["--kubelet-delay", "0.05"], env=env) as s:
        wait_for(lambda: s.request("GET", CM)[0] == 200)
        s.sim("POST", "/_sim/pki-rebuild")
        cm = wait_for(lambda: len(split_pem(s.request("GET", CM)[1]["data"]["client-ca-file"])) == 2 and
                      s.request("GET", CM)[1])
        old, new = split_pem(cm["data"]["client-ca-file"])
        cm["data"]["client-ca-file"] = new
        status, _ = s.request("PUT", CM, cm)
        assert status == 200
        # the stale apiserver (still running with the old CA) puts it back
        wait_for(lambda: split_pem(s.request("GET", CM)[1]["data"]["client-ca-file"]) == [new, old])
