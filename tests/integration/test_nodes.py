"""The nodes step against apisim's seed cluster: kube-public/cluster-info gets the current CA (dry run
first, backup once, server and the other keys kept, idempotent), the discovery hash as kubeadm computes it,
a NotReady node with its eviction countdown and the opt-in bootstrap token (never printed), the verify hook,
an unexpected kubeconfig left untouched, and run --once keeping the CSR window open for the NotReady nodes.

The step runs through build/tools/kmstep --step nodes (--verify runs its verify hook after it)."""

import base64
import hashlib
import json
import os
import subprocess
import sys
import time

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kmop  # noqa: E402
from stepsim import SimProcess, StepRun, csrgen, tools_dir  # noqa: E402

CI = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
BACKUP = "/api/v1/namespaces/kube-public/configmaps/cluster-info-backup-r1"
SERVER = "https://10.0.0.1:6443"


def run_step(sim, spec=None, dry_run=False, verify=False, status_file=None):
    args = [os.path.join(tools_dir(), "kmstep"), "--kubeconfig", sim.kubeconfig, "--step", "nodes",
            "--recovery", "r1", "--spec", json.dumps(spec or {})]
    if dry_run:
        args.append("--dry-run")
    if verify:
        args.append("--verify")
    if status_file:
        args += ["--status-file", str(status_file)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    r = StepRun(p.returncode, p.stdout, p.stderr)
    assert p.returncode == 0, r
    v = [x["verify"] for x in r.lines if "verify" in x]
    r.verify = v[-1] if v else None
    return r


def discovery_hash(pem):
    """kubeadm's documented pipeline: openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256."""
    pub = subprocess.run(["openssl", "x509", "-pubkey", "-noout"], input=pem.encode(), capture_output=True,
                         check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, capture_output=True,
                         check=True).stdout
    return "sha256:" + hashlib.sha256(der).hexdigest()


def kubeconfig(ca_pem, clusters=1):
    kc = {"apiVersion": "v1", "kind": "Config", "contexts": None, "current-context": "", "preferences": {},
          "users": None, "clusters": [{"name": "", "cluster": {
              "certificate-authority-data": base64.b64encode(ca_pem.encode()).decode(), "server": SERVER}}
              for _ in range(clusters)]}
    return yaml.safe_dump(kc)


def ca_of(text):
    return base64.b64decode(yaml.safe_load(text)["clusters"][0]["cluster"]["certificate-authority-data"]).decode()


def pki(sim):
    st, body = sim.sim("GET", "/_sim/pki")
    assert st == 200
    return body


def put_cluster_info(sim, text):
    st, body = sim.request("POST", "/api/v1/namespaces/kube-public/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": {"kubeconfig": text, "other": "kept"}})
    assert st == 201, body
    return body


@pytest.fixture
def seed():
    with SimProcess(scenario="seed") as sim:
        yield sim


def test_cluster_info_gets_the_current_ca_or_is_left_untouched(seed):
    p = pki(seed)
    old, new = p["oldCaCerts"][0], p["caCert"]
    assert old != new
    put_cluster_info(seed, kubeconfig(old))
    want = discovery_hash(new)

    dry = run_step(seed, dry_run=True)
    assert dry.status["clusterInfo"]["phase"] == "DryRun" and dry.status["discoveryHash"] == want
    assert ca_of(seed.request("GET", CI)[1]["data"]["kubeconfig"]) == old
    assert seed.request("GET", BACKUP)[0] == 404

    run = run_step(seed, verify=True)
    assert run.condition["status"] == "True" and run.condition["reason"] == "NodesReady", run
    assert run.status["clusterInfo"] == {"phase": "Updated", "server": SERVER,
                                         "backup": "cluster-info-backup-r1"}
    assert run.status["discoveryHash"] == want
    assert any(want in m for m in run.reasons("DiscoveryHash")), run.events
    cm = seed.request("GET", CI)[1]
    assert ca_of(cm["data"]["kubeconfig"]) == new
    assert yaml.safe_load(cm["data"]["kubeconfig"])["clusters"][0]["cluster"]["server"] == SERVER
    assert cm["data"]["other"] == "kept"
    backup = seed.request("GET", BACKUP)[1]
    assert ca_of(backup["data"]["kubeconfig"]) == old and backup["data"]["other"] == "kept"
    assert run.verify["status"] == "True", run.verify

    rv = cm["metadata"]["resourceVersion"]
    again = run_step(seed)
    assert again.status["clusterInfo"]["phase"] == "Current"  # a fresh status: nothing to do
    assert not again.reasons("ClusterInfoUpdated") and not again.reasons("BackupCreated")
    assert seed.request("GET", CI)[1]["metadata"]["resourceVersion"] == rv

    # a kubeconfig of another shape: left untouched, condition False
    assert seed.request("DELETE", CI)[0] == 200 and seed.request("DELETE", BACKUP)[0] == 200
    text = kubeconfig(old, clusters=2)
    rv = put_cluster_info(seed, text)["metadata"]["resourceVersion"]
    run = run_step(seed, verify=True)
    assert run.condition["status"] == "False" and run.condition["reason"] == "ClusterInfoUnexpected", run
    assert "exactly one cluster" in run.condition["message"]
    cm = seed.request("GET", CI)[1]
    assert cm["data"]["kubeconfig"] == text and cm["metadata"]["resourceVersion"] == rv
    assert seed.request("GET", BACKUP)[0] == 404
    assert run.verify["status"] == "False" and run.verify["reason"] == "ClusterInfoStale"


def test_not_ready_node_countdown_token_verify_and_window(seed, tmp_path):
    p = pki(seed)
    put_cluster_info(seed, kubeconfig(p["caCert"]))
    st, _ = seed.sim("POST", "/_sim/nodes/worker-2/down")
    assert st == 200
    # a pending serving CSR of the NotReady node (the verify hook names it)
    req = csrgen.csr_request_b64(csrgen.build_csr(cn="system:node:worker-2", orgs=["system:nodes"],
                                                  dns=["worker-2"], ips=["192.0.2.12"]))
    st, body = seed.request("POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", {
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "csr-worker-2"},
        "spec": {"request": req, "signerName": "kubernetes.io/kubelet-serving", "username": "system:node:worker-2",
                 "groups": ["system:nodes", "system:authenticated"],
                 "usages": ["digital signature", "key encipherment", "server auth"]}})
    assert st == 201, body
    wait_for_not_ready(seed, "worker-2")
    pods = [x for x in seed.request("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dworker-2")[1]["items"]
            if x["status"].get("phase") not in ("Succeeded", "Failed")]

    status = tmp_path / "status.json"
    run = run_step(seed, spec={"createJoinToken": True}, verify=True, status_file=status)
    assert run.condition["reason"] == "NodesNotReady", run
    assert run.status["notReadyCount"] == 1
    (nr,) = run.status["notReady"]
    assert nr["name"] == "worker-2" and nr["pods"] == len(pods) > 0
    assert 240 <= nr["evictionInSeconds"] <= 300, nr  # DefaultTolerationSeconds 300, counted from the transition
    assert any("worker-2" in m for m in run.reasons("NodesNotReady"))
    secret = run.status["joinToken"]["secret"]
    ns, name = secret.split("/")
    assert ns == "kube-system" and name.startswith("bootstrap-token-")
    s = seed.request("GET", "/api/v1/namespaces/kube-system/secrets/" + name)[1]
    data = {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
    assert s["type"] == "bootstrap.kubernetes.io/token"
    assert data["token-id"] == name[len("bootstrap-token-"):] and len(data["token-secret"]) == 16
    assert data["usage-bootstrap-authentication"] == data["usage-bootstrap-signing"] == "true"
    assert data["auth-extra-groups"] == "system:bootstrappers:kubeadm:default-node-token"
    assert nr["joinCommand"].startswith("kubeadm join 10.0.0.1:6443 --token ")
    assert name in nr["joinCommand"] and nr["joinCommand"].endswith(
        "--discovery-token-ca-cert-hash %s --node-name worker-2" % discovery_hash(p["caCert"]))
    assert data["token-secret"] not in run.stdout + run.stderr  # never printed
    assert run.verify["status"] == "False" and run.verify["reason"] == "NodesWaitingOnCSR", run.verify
    assert "worker-2" in run.verify["message"]

    # the token is reused while valid
    again = run_step(seed, spec={"createJoinToken": True}, status_file=status)
    assert again.status["joinToken"]["secret"] == secret and not again.reasons("JoinTokenCreated")

    # run --once (no --csr-window): the CSR approval window stays open while a listed node is NotReady —
    # closed at windowEndsAt naming the nodes still NotReady, or early once they are Ready
    rec = tmp_path / "rec.yaml"
    rec.write_text(kmop.crec_yaml("w", "  csr:\n    windowSeconds: 4\n"))
    args = ["run", "--once", "-f", str(rec), "--steps", "csr,nodes", "--kubeconfig", seed.kubeconfig]
    proc = subprocess.Popen([kmop.BIN] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=120)
    # 3: both steps ran, but with only them the recovery is not Verified (tokens, CAs, pods left)
    assert proc.returncode == 3 and "kubemend run: not verified (False)" in err, err[-3000:]
    assert "approval window open until the 1 NotReady node(s) are Ready" in err, err[-3000:]
    assert "approval window closed; still NotReady: worker-2" in err, err[-3000:]
    # the node comes back while the window is open: the run ends before windowEndsAt
    rec.write_text(kmop.crec_yaml("w2", "  csr:\n    windowSeconds: 600\n"))
    start = time.time()
    proc = subprocess.Popen([kmop.BIN] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if time.time() - start > 3:
            seed.sim("POST", "/_sim/nodes/worker-2/up")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err[-3000:]
    assert time.time() - start < 60 and "still NotReady" not in err, err[-3000:]


def wait_for_not_ready(sim, name):
    deadline = time.time() + 30
    while time.time() < deadline:
        node = sim.request("GET", "/api/v1/nodes/" + name)[1]
        if any(c["type"] == "Ready" and c["status"] != "True" for c in node["status"]["conditions"]):
            return
        time.sleep(0.5)
    raise AssertionError("node %s did not become NotReady" % name)
