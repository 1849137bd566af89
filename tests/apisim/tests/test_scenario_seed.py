"""The seed scenario: contents, the stale/forged objects it promises, and steady state (in-process + over HTTPS)."""

import base64
import collections
import json

import pytest

from apisim import csrgen
from apisim.controllers import SA_TOKEN, local_sim, split_pem, wait_for
from apisim.pki import b64url_decode
from apisim.scenario import ScenarioError, load_scenario
from apisim.testing import SimProcess

CSR = "certificates.k8s.io/certificatesigningrequests"


@pytest.fixture(scope="module")
def seeded():
    sim = local_sim(start=False)
    summary = load_scenario(sim, "seed")
    rv = sim.store.current_rv()
    sim.controllers.start()
    yield sim, summary, rv
    sim.controllers.stop()


def kid_of(secret):
    tok = base64.b64decode(secret["data"]["token"]).decode()
    return json.loads(b64url_decode(tok.split(".")[0]))["kid"], tok


def test_seed_shape(seeded):
    sim, summary, _ = seeded
    pods = sim.store.list("pods")
    assert 40 <= len(pods) <= 60
    assert all(p["status"]["phase"] == "Running" for p in pods)
    assert sorted(n["metadata"]["name"] for n in sim.store.list("nodes")) == ["cp-1", "worker-1", "worker-2"]
    for n in sim.store.list("nodes"):
        assert {a["type"] for a in n["status"]["addresses"]} == {"InternalIP", "Hostname"}
    ks = {p["metadata"]["name"] for p in sim.store.list("pods", "kube-system")}
    assert {"kube-apiserver-cp-1", "etcd-cp-1"} <= ks
    assert any(n.startswith("calico-node-") for n in ks) and any(n.startswith("kube-proxy-") for n in ks)
    for name, sa in (("calico-node", "calico-node"), ("kube-proxy", "kube-proxy")):
        ds = sim.store.get("apps/daemonsets", "kube-system", name)
        assert ds["spec"]["template"]["spec"]["serviceAccountName"] == sa
        assert ds["status"]["numberReady"] == 3
    kinds = collections.Counter(p["metadata"].get("ownerReferences", [{}])[0].get("kind") for p in pods)
    assert kinds["ReplicaSet"] and kinds["StatefulSet"] and kinds["DaemonSet"] and kinds["Job"] and kinds["Node"]
    assert kinds[None] == 4  # ownerless
    sas = collections.Counter(p["spec"]["serviceAccountName"] for p in pods)
    assert sas["default"] >= 5 and len(sas) >= 8


def test_seed_ownerless_automount_and_mirror_pods(seeded):
    sim, summary, _ = seeded
    assert "ci/ci-runner-manual" in summary["ownerlessPods"]
    p = sim.store.get("pods", "ci", "ci-runner-manual")
    assert p["spec"]["serviceAccountName"] == "ci-runner" and "ownerReferences" not in p["metadata"]
    quiet = sim.store.get("pods", "ci", "no-token-job")
    assert quiet["spec"]["automountServiceAccountToken"] is False and "volumes" not in quiet["spec"]
    graf = [p for p in sim.store.list("pods", "monitoring") if p["metadata"]["name"].startswith("grafana-")][0]
    assert not any(v["name"].startswith("kube-api-access-") for v in graf["spec"].get("volumes", []))
    mirror = sim.store.get("pods", "kube-system", "kube-apiserver-cp-1")
    assert mirror["metadata"]["annotations"]["kubernetes.io/config.mirror"]
    assert mirror["metadata"]["ownerReferences"][0]["kind"] == "Node"


def test_seed_token_secrets_stale_fresh_user_created(seeded):
    sim, summary, _ = seeded
    old_kid = sim.pki.old_sa_key().kid
    cur_kid = sim.pki.current_sa_key.kid
    ca = base64.b64encode(sim.pki.ca_cert_pem.encode()).decode()
    stale = set(summary["staleTokenSecrets"])
    fresh = set(summary["freshTokenSecrets"])
    assert {"kube-system/coredns", "kube-system/kube-proxy", "kube-system/calico-node"} <= {
        s.rsplit("-token-", 1)[0] for s in stale}
    assert {"ci/ci-deployer-token", "web/blog-publisher", "shop/frontend-manual-token",
            "billing/invoicer-token-old"} <= stale
    assert {"web/blog-api-token"} <= fresh and any(s.startswith("monitoring/alertmanager-token-") for s in fresh)
    for ref in stale | fresh:
        ns, name = ref.split("/")
        s = sim.store.get("secrets", ns, name)
        kid, tok = kid_of(s)
        assert kid == (old_kid if ref in stale else cur_kid)
        assert (sim.pki.verify_jwt(tok) is None) == (ref in stale)
        assert s["data"]["ca.crt"] == ca  # ca.crt refreshed, token not re-signed
    broken = sim.store.get("secrets", "ci", "ci-runner-broken-token")
    assert base64.b64decode(broken["data"]["token"]) == b"not-a-jwt"
    dying = sim.store.get("secrets", "billing", "invoicer-token-old")
    assert dying["metadata"]["deletionTimestamp"] and dying["metadata"]["finalizers"]
    manual = sim.store.get("secrets", "shop", "frontend-manual-token")
    assert "kubernetes.io/service-account.uid" not in manual["metadata"]["annotations"]
    sa = sim.store.get("serviceaccounts", "ci", "ci-deployer")
    assert "ci-deployer-token" not in [r["name"] for r in sa.get("secrets", [])]  # user-created: not referenced
    assert all(s["type"] in (SA_TOKEN, "Opaque") for s in sim.store.list("secrets"))


def test_seed_csrs_valid_and_forged(seeded):
    sim, summary, _ = seeded
    assert summary["validCsrs"] == ["csr-cp-1-serving", "csr-worker-1-serving", "csr-worker-2-serving"]
    assert len(summary["forgedCsrs"]) == 10 and summary["otherCsrs"] == ["csr-worker-2-client"]
    ips = {n["metadata"]["name"]: n["status"]["addresses"][0]["address"] for n in sim.store.list("nodes")}

    def info(name):
        c = sim.store.get(CSR, None, name)
        assert "conditions" not in (c.get("status") or {})  # all pending
        return c["spec"], csrgen.parse_request_b64(c["spec"]["request"])
    for name in summary["validCsrs"]:
        spec, i = info(name)
        node = spec["username"].split(":")[-1]
        assert i == {"cn": spec["username"], "orgs": ["system:nodes"], "dns": [node], "ips": [ips[node]],
                     "emails": [], "uris": []}
        assert spec["signerName"] == "kubernetes.io/kubelet-serving"
    assert info("csr-worker-1-steals-ip")[1]["ips"] == [ips["worker-1"], ips["worker-2"]]
    assert info("csr-worker-1-steals-dns")[1]["dns"] == ["worker-1", "cp-1"]
    assert info("csr-not-a-node")[0]["username"] == "system:serviceaccount:ci:ci-runner"
    assert "client auth" in info("csr-worker-2-client-usage")[0]["usages"]
    assert info("csr-worker-1-email-san")[1]["emails"] and info("csr-worker-2-uri-san")[1]["uris"]
    spec, i = info("csr-cn-mismatch")
    assert i["cn"] != spec["username"]
    assert info("csr-worker-2-no-org")[1]["orgs"] == []
    assert info("csr-worker-1-no-sans")[1]["dns"] == [] and info("csr-worker-1-no-sans")[1]["ips"] == []
    with pytest.raises(ValueError):
        csrgen.parse_request_b64(sim.store.get(CSR, None, "csr-garbage-pem")["spec"]["request"])
    assert info("csr-worker-2-client")[0]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"


def test_seed_extension_apiserver_authentication_old_then_new(seeded):
    sim, _, _ = seeded
    d = sim.store.get("configmaps", "kube-system", "extension-apiserver-authentication")["data"]
    client = split_pem(d["client-ca-file"])
    assert client == [sim.pki.old_ca_cert_pems[-1], sim.pki.ca_cert_pem]
    front = split_pem(d["requestheader-client-ca-file"])
    assert len(front) == 2 and front[1] == sim.pki.front_proxy_ca_cert_pem


def _not_before(pem):
    import calendar
    import subprocess
    import time
    out = subprocess.run(["openssl", "x509", "-noout", "-startdate"], input=pem, capture_output=True, text=True,
                         check=True).stdout
    return calendar.timegm(time.strptime(out.strip().split("=", 1)[1].replace(" GMT", ""), "%b %d %H:%M:%S %Y"))


def _created(obj):
    import calendar
    import time
    return calendar.timegm(time.strptime(obj["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ"))


def test_seed_rebuild_like_a_real_one(seeded):
    """The rebuild's CAs differ like a real rebuild's: the old CA (cluster and front-proxy) is weeks
    older than the new one, made at the rebuild; what existed before the rebuild was created before
    the new CA's notBefore, what was created after it (alertmanager) is not older.  kubemend tells
    stale pods by exactly that."""
    sim, _, _ = seeded
    import time
    new, old = _not_before(sim.pki.ca_cert_pem), _not_before(sim.pki.old_ca_cert_pems[-1])
    assert new - old >= 7 * 86400, (old, new)
    assert abs(time.time() - new) < 600
    fp_new = _not_before(sim.pki.front_proxy_ca_cert_pem)
    fp_old = _not_before(sim.pki.old_front_proxy_ca_cert_pems[-1])
    assert fp_new - fp_old >= 7 * 86400
    before = [p for p in sim.store.list("pods") if not p["metadata"]["name"].startswith("alertmanager")]
    assert before and all(old < _created(p) < new for p in before)
    for res, ns, name in (("apps/deployments", "shop", "frontend"), ("apps/daemonsets", "kube-system", "calico-node"),
                          ("namespaces", None, "shop")):
        assert _created(sim.store.get(res, ns, name)) < new
    assert _created(sim.store.get("apps/statefulsets", "monitoring", "alertmanager")) >= new
    assert all(_created(p) >= new for p in sim.store.list("pods", "monitoring")
               if p["metadata"]["name"].startswith("alertmanager"))


def test_seed_is_steady_state(seeded):
    sim, _, rv = seeded
    sim.controllers.wait_idle()
    wait_for(lambda: sim.controllers.wait_idle(1))
    # the controllers found nothing to change (no pod churn, no status rewrites, no token re-signing)
    assert sim.store.current_rv() == rv


def test_unknown_section_and_bad_kind_rejected():
    sim = local_sim(start=False)
    with pytest.raises(ScenarioError):
        load_scenario(sim, {"namespaces": ["a"], "bogus": []})
    with pytest.raises(ScenarioError):
        load_scenario(sim, {"workloads": [{"kind": "CronJob", "namespace": "a", "name": "x"}]})


def test_seed_over_https_with_kubectl():
    with SimProcess(scenario="seed", extra_args=["--kubelet-delay", "0.1"]) as s:
        out = s.kubectl("get", "pods", "-n", "shop", "-o", "name").stdout.split()
        assert len(out) == 10
        assert "1/1" in s.kubectl("get", "pod", "ci-runner-manual", "-n", "ci").stdout
        s.kubectl("rollout", "restart", "deployment/frontend", "-n", "shop")
        r = s.kubectl("rollout", "status", "deployment/frontend", "-n", "shop", "--timeout=60s")
        assert 'deployment "frontend" successfully rolled out' in r.stdout
        path = "/api/v1/namespaces/kube-system/pods/kube-apiserver-cp-1"
        uid = s.request("GET", path)[1]["metadata"]["uid"]
        s.kubectl("delete", "pod", "kube-apiserver-cp-1", "-n", "kube-system", "--wait=false")

        def back():
            st, body = s.request("GET", path)
            return st == 200 and body["metadata"]["uid"] != uid and body["status"]["phase"] == "Running"
        wait_for(back, timeout=30)  # the kubelet re-creates the static pod's mirror
        status, body = s.request("POST", "/api/v1/namespaces/shop/pods/frontend-nope/eviction",
                                 {"apiVersion": "policy/v1", "kind": "Eviction",
                                  "metadata": {"name": "frontend-nope", "namespace": "shop"}})
        assert status == 404


def test_seed_in_legacy_profile_every_sa_has_a_token_and_is_steady():
    from apisim.scenario import resolve
    sim = local_sim(start=False, profile="legacy")
    doc = dict(resolve("seed"), profile="legacy")
    summary = load_scenario(sim, doc)
    for sa in sim.store.list("serviceaccounts"):
        assert sa.get("secrets"), sa["metadata"]
    frontend = [p for p in sim.store.list("pods", "shop") if p["metadata"]["name"].startswith("frontend-")][0]
    vol = frontend["spec"]["volumes"][0]
    assert vol["secret"]["secretName"].startswith("frontend-token-")
    assert "shop/" + vol["secret"]["secretName"] in summary["staleTokenSecrets"]
    rv = sim.store.current_rv()
    sim.controllers.start()
    try:
        assert sim.controllers.wait_idle(5)
        assert sim.store.current_rv() == rv
    finally:
        sim.controllers.stop()
