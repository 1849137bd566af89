"""The seed scenario on the real server (realk8s.seed): installed, PKI rebuilt, kubelets re-joined, CSRs
created — and the description the recovery suites check against agrees with what the server says."""

import base64
import json

import pytest
import yaml
from realk8s import seed
from realk8s.pki import load_kubeconfig

from helpers import extauth, pems


@pytest.fixture(scope="module")
def seeded(control_plane, kubelet):
    desc = seed.install(control_plane, kubelet)
    before = {"pods_ready": desc.builder.workloads_ready(), "tokens": seed.token_secret_states(control_plane)}
    seed.disaster(control_plane, kubelet, desc)
    return desc, before


def test_before_the_disaster_everything_ran(seeded):
    desc, before = seeded
    assert before["pods_ready"]
    assert desc["pods"] and all(p["node"] for p in desc["pods"].values())
    assert all(st["authenticated"] for ref, st in before["tokens"].items()
               if ref in desc["tokenSecrets"] and desc["tokenSecrets"][ref]["expect"] == "stale"
               and not st["deleting"])


def test_token_secrets_as_described(control_plane, seeded):
    desc, _ = seeded
    states = seed.token_secret_states(control_plane)
    assert set(desc["tokenSecrets"]) == set(states)
    for ref, info in desc["tokenSecrets"].items():
        assert states[ref]["uid"] == info["uid"], ref
        assert states[ref]["authenticated"] == (info["expect"] == "fresh"), (ref, info, states[ref])
    assert desc["deletingTokenSecrets"] == ["billing/invoicer-token-old"]
    assert states["billing/invoicer-token-old"]["deleting"]
    for ref, uid in desc["userCreatedTokenSecrets"].items():
        assert states[ref]["uid"] == uid
    assert {"ci/ci-deployer-token", "web/blog-publisher", "web/blog-api-token", "shop/frontend-manual-token",
            "ci/ci-runner-broken-token"} == set(desc["userCreatedTokenSecrets"])
    stale = [r for r, i in desc["tokenSecrets"].items() if i["expect"] == "stale"]
    if control_plane.auto_token_secrets:  # every ServiceAccount has one, the controllers' own included
        assert any(r.startswith("kube-system/deployment-controller-token-") for r in stale)
    else:
        assert not any(r.startswith("kube-system/deployment-controller-token-") for r in desc["tokenSecrets"])
    assert any(r.startswith("kube-system/calico-node-token-") for r in stale)


def test_stale_token_secrets_got_the_new_ca(control_plane, seeded):
    """The real tokens controller rewrites ca.crt of the token Secrets it manages but keeps the stale token."""
    desc, _ = seeded
    c = control_plane.client()
    new_ca = control_plane.pki.ca_pem()
    for ref, info in desc["tokenSecrets"].items():
        if info["expect"] != "stale" or info["deleting"] or info["missingUidAnnotation"]:
            continue
        ns, name = ref.split("/")
        data = c.get("/api/v1/namespaces/%s/secrets/%s" % (ns, name))["data"]
        assert base64.b64decode(data["ca.crt"]).decode() == new_ca, ref


def test_workloads_ready_and_pods_kept(control_plane, seeded):
    desc, _ = seeded
    assert desc.builder.workloads_ready(), desc.builder.waiting_on
    c = control_plane.client()
    for ref, uid in list(desc["ownerlessPods"].items()) + list(desc["mirrorPods"].items()):
        ns, name = ref.split("/")
        assert c.get("/api/v1/namespaces/%s/pods/%s" % (ns, name))["metadata"]["uid"] == uid
    kinds = {w["kind"] for w in desc["workloads"].values()}
    assert kinds == {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}
    rs_pods = [p for p in desc["pods"].values() if p["owner"] == "ReplicaSet/ci-worker"]
    assert len(rs_pods) == 2 and all(p["serviceAccount"] == "ci-runner" for p in rs_pods)
    assert desc["pods"]["ci/no-token-job"]["automount"] is False
    assert desc["pods"]["monitoring/alertmanager-0"]["phase"] == "after"
    node = c.get("/api/v1/nodes/cp-1")
    assert any(t["key"].startswith("node-role.kubernetes.io/") for t in node["spec"]["taints"])
    assert not [p for p in desc["pods"].values() if p["node"] == "cp-1" and p["owner"] and
                p["owner"].startswith("Deployment/") and not p["owner"].startswith("Deployment/coredns")]


def test_csrs_as_described(control_plane, kubelet, seeded):
    desc, _ = seeded
    c = control_plane.client()
    csrs = {x["metadata"]["name"]: x for x in c.get("/apis/certificates.k8s.io/v1/certificatesigningrequests")[
        "items"]}
    assert set(desc["csrs"]["valid"]) == {"csr-cp-1-serving", "csr-worker-1-serving", "csr-worker-2-serving"}
    for name in desc["csrs"]["valid"]:
        node = name[len("csr-"):-len("-serving")]
        assert csrs[name]["spec"]["username"] == "system:node:" + node
        assert not (csrs[name].get("status") or {}).get("conditions")
    assert csrs["csr-not-a-node"]["spec"]["username"] == "system:serviceaccount:ci:ci-runner"
    assert len(desc["csrs"]["forged"]) == 10 and set(desc["csrs"]["forged"]) <= set(csrs)
    assert desc["csrs"]["skipped"] == {"csr-garbage-pem": desc["csrs"]["skipped"]["csr-garbage-pem"]}
    assert csrs["csr-worker-2-client"]["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"


def test_trust_bundles_and_cluster_info(control_plane, seeded):
    desc, _ = seeded
    data = extauth(control_plane)
    assert sorted(pems(data["client-ca-file"])) == sorted([desc["ca"]["old"], desc["ca"]["new"]])
    assert sorted(pems(data["requestheader-client-ca-file"])) == sorted([desc["ca"]["oldFrontProxy"],
                                                                          desc["ca"]["newFrontProxy"]])
    ci = control_plane.client().get("/api/v1/namespaces/kube-public/configmaps/cluster-info")["data"]
    kc = yaml.safe_load(ci["kubeconfig"])
    ca = base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    assert ca == desc["ca"]["old"]  # kubeadm's cluster-info still names the lost CA
    assert "jws-kubeconfig-" + desc["clusterInfo"]["tokenId"] in ci


def test_description_saved(control_plane, seeded):
    desc, _ = seeded
    with open(desc["path"]) as f:
        saved = json.load(f)
    assert saved["tokenSecrets"] == desc["tokenSecrets"] and saved["version"] == control_plane.version
    assert load_kubeconfig(control_plane.admin_kubeconfig)[1] == desc["ca"]["new"]
