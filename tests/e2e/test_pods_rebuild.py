"""The pods step on the real server (each version): what proves an owner (issue 12's decoy) and the PKI rebuild
time rule. Before the rebuild: a standalone ReplicaSet decoy-5d8f7c9b4 (pods labelled pod-template-hash 5d8f7c9b4,
SA worker) next to an unrelated Deployment decoy (default SA), and a Deployment api (SA worker). After
cp.rebuild_pki() and the nodes' re-join: a Deployment fresh (SA worker). `kubemend run --once --steps pods` with the
new admin.conf must derive the rebuild time from the new CA, evict the decoy ReplicaSet's pod, restart api once,
never write Deployment/decoy, leave fresh alone — and a second run must change nothing."""

import calendar
import json
import os
import subprocess
import time

import pytest
from realk8s import REPO_ROOT

KUBEMEND = os.environ.get("KUBEMEND_BIN") or os.path.join(REPO_ROOT, "build", "kubemend")
NS = "decoys"
MARKER = "kubectl.kubernetes.io/restartedAt"


def not_before(pem):
    out = subprocess.run(["openssl", "x509", "-noout", "-startdate"], input=pem, capture_output=True, text=True,
                         check=True).stdout
    return calendar.timegm(time.strptime(out.strip().split("=", 1)[1].replace(" GMT", ""), "%b %d %H:%M:%S %Y"))


def epoch(text):
    return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))  # kubemend writes UTC ("Z")


def wait_for(fn, timeout=120, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.5)
    raise AssertionError("timed out waiting for %s" % what)


def deployment(name, sa, labels, replicas=1):
    spec = {"containers": [{"name": "c", "image": "registry.example/app:1"}]}
    if sa:
        spec["serviceAccountName"] = sa
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": spec}}}


def run_pods_step(cp):
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    proc = subprocess.run([KUBEMEND, "run", "--once", "--steps", "pods", "--kubeconfig", cp.admin_kubeconfig,
                           "-o", "json"], capture_output=True, text=True, timeout=600, env=env)
    with open(os.path.join(cp.workdir, "kubemend-pods-%d.log" % time.time()), "w") as f:
        f.write(proc.stderr)
    # 3: the pods step succeeded but, with only it run, the recovery is not Verified (tokens, CAs left)
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    conds = {c["type"]: c["status"] for c in out.get("status", out)["conditions"]}
    assert conds["PodsRestarted"] == "True", conds
    return out


@pytest.fixture(scope="module")
def decoys(control_plane, kubelet):
    if not os.access(KUBEMEND, os.X_OK):
        pytest.skip("no kubemend binary at %s (run `make`)" % KUBEMEND)
    c = control_plane.client()
    c.create("/api/v1/namespaces", {"metadata": {"name": NS}})
    c.create("/api/v1/namespaces/%s/serviceaccounts" % NS, {"metadata": {"name": "worker"}})
    apps = "/apis/apps/v1/namespaces/%s/" % NS
    c.create(apps + "deployments", deployment("decoy", None, {"app": "decoy-web"}))
    labels = {"app": "worker", "pod-template-hash": "5d8f7c9b4"}
    c.create(apps + "replicasets", {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "decoy-5d8f7c9b4", "labels": {"team": "batch"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"serviceAccountName": "worker",
                                       "containers": [{"name": "c", "image": "registry.example/app:1"}]}}}})
    c.create(apps + "deployments", deployment("api", "worker", {"app": "api"}))

    def running():
        pods = c.get("/api/v1/namespaces/%s/pods" % NS)["items"]
        up = [p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
        return pods if len(up) == 3 == len(pods) else None
    pods = wait_for(running, what="the decoy namespace's 3 pods running")
    before = {p["metadata"]["ownerReferences"][0]["name"]: p for p in pods}
    gens = {n: c.get(apps + "deployments/" + n)["metadata"]["generation"] for n in ("decoy", "api")}
    control_plane.rebuild_pki()
    kubelet.rejoin()
    kubelet.wait_nodes_ready(timeout=90)
    rebuilt = not_before(control_plane.pki.ca_pem())
    time.sleep(1.1)  # "fresh" is created in a later second than the new CA
    c = control_plane.client()
    c.create(apps + "deployments", deployment("fresh", "worker", {"app": "fresh"}))
    wait_for(lambda: [p for p in c.get("/api/v1/namespaces/%s/pods?labelSelector=app%%3Dfresh" % NS)["items"]
                      if p["status"].get("phase") == "Running"], what="fresh's pod running")
    status = run_pods_step(control_plane)
    return {"before": before, "gens": gens, "rebuilt": rebuilt, "status": status}


def test_rebuild_time_derived_from_the_new_ca(decoys):
    st = decoys["status"]
    assert st["phase"] == "Succeeded", st
    assert epoch(st["rebuild"]["time"]) == decoys["rebuilt"], st["rebuild"]
    assert "extension-apiserver-authentication client-ca-file" in st["rebuild"]["source"], st["rebuild"]


def test_decoy_deployment_untouched_and_standalone_replicaset_pod_evicted(control_plane, decoys):
    c = control_plane.client()
    apps = "/apis/apps/v1/namespaces/%s/" % NS
    d = c.get(apps + "deployments/decoy")
    assert d["metadata"]["generation"] == decoys["gens"]["decoy"]
    assert MARKER not in ((d["spec"]["template"].get("metadata") or {}).get("annotations") or {})
    old = decoys["before"]["decoy-5d8f7c9b4"]["metadata"]
    st, cur = control_plane.request("GET", "/api/v1/namespaces/%s/pods/%s" % (NS, old["name"]))
    assert st == 404 or cur["metadata"]["uid"] != old["uid"] or cur["metadata"].get("deletionTimestamp"), cur
    pods = decoys["status"]["pods"]
    assert (pods["restarted"], pods["evicted"]) == (1, 1), pods


def test_stale_deployment_restarted_once_and_fresh_one_left_alone(control_plane, decoys):
    c = control_plane.client()
    apps = "/apis/apps/v1/namespaces/%s/" % NS
    api = c.get(apps + "deployments/api")
    assert api["metadata"]["generation"] == decoys["gens"]["api"] + 1
    mark = api["spec"]["template"]["metadata"]["annotations"][MARKER]
    assert decoys["rebuilt"] <= epoch(mark) <= time.time() + 1, mark
    fresh = c.get(apps + "deployments/fresh")
    assert fresh["metadata"]["generation"] == 1
    assert MARKER not in ((fresh["spec"]["template"].get("metadata") or {}).get("annotations") or {})
    # the same command again: nothing left, nothing written
    again = run_pods_step(control_plane)
    assert again["phase"] == "Succeeded"
    assert again["pods"].get("restarted", 0) == 0 and again["pods"].get("evicted", 0) == 0, again["pods"]
    for name, gen in (("decoy", decoys["gens"]["decoy"]), ("api", decoys["gens"]["api"] + 1), ("fresh", 1)):
        assert c.get(apps + "deployments/" + name)["metadata"]["generation"] == gen, name
